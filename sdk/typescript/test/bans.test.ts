// Bans after failed logins, against a real `wharf serve`: listed (none on a fresh server, and
// the kind filter checked) and lifted (a target that is not banned is a 404 problem).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Wharf, WharfProblemError } from "@wharf/sdk";
import { startWharf, type WharfServer } from "./helpers/wharf-server.js";

let server: WharfServer;
let wharf: Wharf;

before(async () => {
  server = await startWharf();
  wharf = new Wharf({ baseUrl: server.baseUrl, apiKey: server.apiKey });
});

after(async () => {
  await server?.stop();
});

async function problemStatus(promise: Promise<unknown>): Promise<number> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof WharfProblemError, `expected a WharfProblemError, got ${String(error)}`);
    return error.status;
  }
  assert.fail("expected the call to fail");
}

describe("bans", () => {
  test("a fresh server has none, of either kind", async () => {
    const page = await wharf.bans.listPage({ kind: "address", pageSize: 10 });
    assert.deepEqual(page.items, []);
    const all = [];
    for await (const ban of wharf.bans.list()) all.push(ban);
    assert.deepEqual(all, []);
  });

  test("lifting a ban that is not in force is a 404; a bad address a 400", async () => {
    assert.equal(await problemStatus(wharf.bans.liftAddress("203.0.113.7")), 404);
    assert.equal(await problemStatus(wharf.bans.liftAddress("2001:db8::1")), 404);
    assert.equal(await problemStatus(wharf.bans.liftUser("alice")), 404);
    assert.equal(await problemStatus(wharf.bans.liftAddress("not-an-address")), 400);
  });
});
