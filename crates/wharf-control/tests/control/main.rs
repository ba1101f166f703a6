//! Integration tests of the control plane against real databases: every test body runs on
//! SQLite (a file in a temp dir) and on PostgreSQL (a fresh database on the local server; see
//! `common`). PostgreSQL being unreachable is a failure, never a skip.

mod admin_key;
mod api;
mod api_rules;
mod buckets;
mod common;
mod defender;
mod events;
mod max_sessions;
mod objects;
mod openapi;
mod password_login;
mod receiver;
mod secrets;
mod store;
mod webhooks;

/// Runs each listed `async fn(TestDb)` as `sqlite::<name>` and `postgres::<name>`.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::TestDb::sqlite().await).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::TestDb::postgres().await).await
                }
            )*
        }
    };
}
