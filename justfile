# Wharf developer tasks. `just --list` shows them.

# Run Wharf on the embedded defaults (SQLite + local-disk bucket under ./wharf-data).
serve:
    cargo run --release -- serve

# The whole test suite (needs PostgreSQL on 127.0.0.1:5432 and openssh-client).
test:
    cargo test --workspace

# Formatting and lints, as CI runs them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Regenerate openapi/openapi.json after an API change.
openapi:
    WHARF_UPDATE_OPENAPI=1 cargo test -p wharf-control openapi_document_is_up_to_date

# What CI runs.
ci:
    bash .ci/run

# Benchmarks side by side with OpenSSH and rclone (writes docs/benchmarks.md);
# `just bench --smoke` runs tiny sizes once, to check the script (CI does).
bench *ARGS:
    bash bench/run.sh {{ARGS}}
