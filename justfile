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

# Benchmarks vs OpenSSH, rclone and ProFTPD, as root: writes docs/benchmarks.md (--smoke: tiny, temp dir).
bench *ARGS:
    bash bench/run.sh {{ARGS}}
