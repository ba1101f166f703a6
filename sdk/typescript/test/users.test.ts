// Users, buckets, events and errors against a real `wharf serve`.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Wharf, WharfProblemError, type User } from "@wharf/sdk";
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

async function rejectsWithProblem(
  promise: Promise<unknown>,
  check: (error: WharfProblemError) => void,
): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof WharfProblemError, `expected a WharfProblemError, got ${String(error)}`);
    check(error);
    return true;
  });
}

describe("users", () => {
  test("create Alice, Bob and a root user", async () => {
    const alice = await wharf.users.create({
      description: "Trading partner Alice",
      homeDirectory: "/alice",
    });
    assert.match(alice.username, /^[A-Z0-9]{8}$/);
    assert.ok(alice.password.length >= 16, "generated password is at least 16 characters");
    assert.equal(alice.homeDirectory, "/alice");
    assert.equal(alice.description, "Trading partner Alice");
    assert.equal(alice.permissions, "read-write");

    const bob = await wharf.users.create({
      username: "bob",
      description: "Trading partner Bob",
      homeDirectory: "/partners/bob/inbound",
      permissions: "write-only",
      passwordOptions: { length: 32 },
    });
    assert.equal(bob.username, "bob");
    assert.equal(bob.password.length, 32);
    assert.equal(bob.permissions, "write-only");

    const root = await wharf.users.create({ description: "Operations (root)", homeDirectory: "/" });
    assert.equal(root.homeDirectory, "/");
  });

  test("get, update, reset password and delete", async () => {
    const created = await wharf.users.create({
      username: "carol",
      description: "Carol",
      homeDirectory: "/carol",
    });
    const fetched = await wharf.users.get("carol");
    assert.equal(fetched.username, "carol");
    assert.equal(fetched.homeDirectory, "/carol");
    assert.equal(fetched.disabled, false);
    assert.equal((fetched as Record<string, unknown>).password, undefined, "no password in GET");

    const updated = await wharf.users.update("carol", {
      description: "Carol (read only)",
      permissions: "read-only",
      disabled: true,
    });
    assert.equal(updated.description, "Carol (read only)");
    assert.equal(updated.permissions, "read-only");
    assert.equal(updated.disabled, true);
    assert.equal((await wharf.users.get("carol")).permissions, "read-only");

    const { password } = await wharf.users.resetPassword("carol");
    assert.ok(password.length >= 16);
    assert.notEqual(password, created.password, "the new password differs from the first");
    const longer = await wharf.users.resetPassword("carol", { passwordOptions: { length: 64 } });
    assert.equal(longer.password.length, 64);
    assert.notEqual(longer.password, password);

    await wharf.users.delete("carol");
    await rejectsWithProblem(wharf.users.get("carol"), (e) => assert.equal(e.status, 404));
    await rejectsWithProblem(wharf.users.delete("carol"), (e) => assert.equal(e.status, 404));
  });

  test("list follows nextPageToken across pages, every user seen once", async () => {
    const mine = new Set<string>();
    for (let i = 0; i < 25; i++) {
      const user = await wharf.users.create({
        username: `page-${String(i).padStart(2, "0")}`,
        description: `Paging user ${i}`,
        homeDirectory: `/paging/${i}`,
      });
      mine.add(user.username);
    }

    const first = await wharf.users.listPage({ pageSize: 10 });
    assert.equal(first.items.length, 10);
    assert.ok(first.nextPageToken, "a first page of 10 has a next page");

    const seen = new Map<string, number>();
    const users: User[] = [];
    for await (const user of wharf.users.list({ pageSize: 10 })) {
      users.push(user);
      seen.set(user.username, (seen.get(user.username) ?? 0) + 1);
    }
    for (const [username, count] of seen) assert.equal(count, 1, `${username} seen ${count} times`);
    for (const username of mine) assert.equal(seen.get(username), 1, `${username} not listed`);
    assert.ok(users.length >= 25);

    // Walking the pages by hand gives the same users.
    const byHand: string[] = [];
    let pageToken: string | undefined;
    let pages = 0;
    do {
      const page = await wharf.users.listPage({ pageSize: 10, ...(pageToken ? { pageToken } : {}) });
      byHand.push(...page.items.map((u) => u.username));
      pageToken = page.nextPageToken ?? undefined;
      pages++;
    } while (pageToken);
    assert.deepEqual(byHand, users.map((u) => u.username));
    assert.equal(pages, Math.ceil(users.length / 10));
  });

  test("key-only users and passwords chosen by the operator", async () => {
    const chosen = "Kept-From-The-Old-Server";
    const karl = await wharf.users.create({
      description: "Keys only, migrated",
      homeDirectory: "/karl",
      passwordEnabled: false,
      password: chosen,
    });
    assert.equal(karl.password, chosen);
    assert.equal(karl.passwordEnabled, false);
    assert.equal(karl.lastConnectedAt, null);
    const again = await wharf.users.resetPassword(karl.username, { password: "Another-Chosen-Password" });
    assert.equal(again.password, "Another-Chosen-Password");
    assert.equal((await wharf.users.get(karl.username)).passwordEnabled, false);
    const on = await wharf.users.update(karl.username, { passwordEnabled: true });
    assert.equal(on.passwordEnabled, true);
    await rejectsWithProblem(wharf.users.resetPassword(karl.username, { password: "short" }), (e) => {
      assert.equal(e.status, 400);
      assert.ok(e.fieldError("password"), JSON.stringify(e.errors));
    });
    const server = await wharf.server.get();
    assert.match(server.ftpsCertificateSha256 ?? "", /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
  });

  test("bad input is a WharfProblemError that names the field", async () => {
    await rejectsWithProblem(
      wharf.users.create({ description: "Relative home", homeDirectory: "relative" }),
      (e) => {
        assert.equal(e.status, 400);
        assert.equal(typeof e.type, "string");
        assert.ok(e.title.length > 0);
        assert.ok(
          e.errors.some((f) => f.field === "homeDirectory"),
          `errors name homeDirectory: ${JSON.stringify(e.errors)}`,
        );
        assert.ok(e.fieldError("homeDirectory"));
        assert.match(e.message, /homeDirectory/);
      },
    );

    await rejectsWithProblem(
      wharf.users.create({
        description: "Too short a password",
        homeDirectory: "/short",
        passwordOptions: { length: 4 },
      }),
      (e) => {
        assert.equal(e.status, 400);
        assert.ok(e.errors.some((f) => f.field.startsWith("passwordOptions")), JSON.stringify(e.errors));
      },
    );

    await wharf.users.create({ username: "dave", description: "Dave", homeDirectory: "/dave" });
    await rejectsWithProblem(
      wharf.users.create({ username: "dave", description: "Dave again", homeDirectory: "/dave2" }),
      (e) => {
        assert.equal(e.status, 409);
        assert.equal(e.response.status, 409);
        assert.ok(e.fieldError("username"), JSON.stringify(e.errors));
      },
    );

    await rejectsWithProblem(wharf.users.get("NOSUCHUSER"), (e) => {
      assert.equal(e.status, 404);
      assert.ok(e.title.length > 0);
    });
    await rejectsWithProblem(wharf.users.update("NOSUCHUSER", { description: "x" }), (e) =>
      assert.equal(e.status, 404),
    );
    await rejectsWithProblem(wharf.users.resetPassword("NOSUCHUSER"), (e) =>
      assert.equal(e.status, 404),
    );
    await rejectsWithProblem(wharf.users.listPage({ pageSize: 10, pageToken: "not-a-token" }), (e) =>
      assert.equal(e.status, 400),
    );
    assert.throws(() => wharf.users.get(""), TypeError);
  });

  test("a wrong API key is a 401 problem", async () => {
    const stranger = new Wharf({ baseUrl: server.baseUrl, apiKey: "not-the-key" });
    await rejectsWithProblem(stranger.users.listPage(), (e) => assert.equal(e.status, 401));
  });
});

describe("buckets, events and server", () => {
  test("the default bucket is listed and can be fetched", async () => {
    const buckets = [];
    for await (const bucket of wharf.buckets.list()) buckets.push(bucket);
    const byDefault = buckets.find((b) => b.isDefault);
    assert.ok(byDefault, `a default bucket among ${JSON.stringify(buckets)}`);
    const same = await wharf.buckets.get(byDefault.bucketName);
    assert.equal(same.bucketName, byDefault.bucketName);
    await rejectsWithProblem(wharf.buckets.get("no-such-bucket"), (e) => assert.equal(e.status, 404));
  });

  test("events list and get", async () => {
    const page = await wharf.events.listPage({ pageSize: 5 });
    assert.ok(Array.isArray(page.items));
    const all = [];
    for await (const event of wharf.events.list({ pageSize: 5 })) all.push(event);
    for (const event of all.slice(0, 3)) {
      assert.deepEqual(await wharf.events.get(event.id), event);
    }
    await rejectsWithProblem(wharf.events.get("evt_nosuchevent"), (e) => assert.equal(e.status, 404));
  });

  test("server info", async () => {
    const info = await wharf.server.get();
    assert.equal(typeof info.version, "string");
    assert.ok(info.sftpPort > 0);
  });
});
