//! Creates Alice, Bob and a root user and prints how each connects.
//!
//! `WHARF_API_URL=http://127.0.0.1:8080 WHARF_API_KEY=$(cat wharf-data/admin-api-key)
//!  cargo run -p wharf-client --example create_users`

use futures::TryStreamExt;
use wharf_client::{Client, ClientError};
use wharf_core::HomeDirectory;
use wharf_core::api::CreateUserRequest;

fn user(description: &str, home: &str) -> CreateUserRequest {
    CreateUserRequest {
        description: description.into(),
        home_directory: HomeDirectory::parse(home).expect("an absolute home directory"),
        username: None,
        bucket_name: None,
        password_options: None,
        public_keys: None,
        permissions: None,
        max_sessions: None,
    }
}

#[tokio::main]
async fn main() -> Result<(), ClientError> {
    let url = std::env::var("WHARF_API_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let wharf = Client::new(&url, std::env::var("WHARF_API_KEY").ok())?;
    for (description, home) in [
        ("Trading partner Alice", "/alice"),
        ("Trading partner Bob", "/bob"),
        ("Operations (sees the whole bucket)", "/"),
    ] {
        match wharf.create_user(&user(description, home)).await {
            Ok(created) => println!(
                "sftp {}@{}  password: {}  home: {}",
                created.user.username, created.user.endpoint, created.password, home
            ),
            // A problem document: status, title, detail and the fields at fault.
            Err(ClientError::Api { problem, .. }) => {
                eprintln!("{}: {:?}", problem.title, problem.errors)
            }
            Err(other) => return Err(other),
        }
    }
    let users: Vec<_> = wharf.users().try_collect().await?;
    println!("{} users in all", users.len());
    Ok(())
}
