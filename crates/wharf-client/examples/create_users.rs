//! Creates Alice, Bob and a root user, prints how each connects, and lists every user.
//!
//! ```sh
//! WHARF_API_URL=http://127.0.0.1:8080 WHARF_API_KEY=$(cat wharf-data/admin-api-key) \
//!     cargo run -p wharf-client --example create_users
//! ```

use futures::TryStreamExt;
use wharf_client::{Client, ClientError};

#[tokio::main]
async fn main() -> Result<(), ClientError> {
    let url = std::env::var("WHARF_API_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let key = std::env::var("WHARF_API_KEY").ok();
    if key.is_none() {
        eprintln!("WHARF_API_KEY is not set (the admin key is in <data-dir>/admin-api-key)");
    }
    let wharf = Client::new(&url, key)?;
    // The SFTP port partners connect to (2222 unless --sftp-addr says otherwise).
    let sftp_port = wharf.server_info().await?.sftp_port;

    for (description, home) in [
        ("Trading partner Alice", "/alice"),
        ("Trading partner Bob", "/bob"),
        ("Operations (sees the whole bucket)", "/"),
    ] {
        match wharf.create_user_at(description, home).await {
            // The password is in this reply only: hand it to the partner now.
            Ok(created) => println!(
                "sftp -P {sftp_port} {}@{}  password: {}  home: {}",
                created.user.username, created.user.endpoint, created.password, home
            ),
            // A problem document: status, title, detail and the fields at fault.
            Err(error @ ClientError::Api { .. }) => {
                eprintln!("cannot create {description}: {error}");
                for field in error.field_errors() {
                    eprintln!("  {} is wrong: {}", field.field, field.message);
                }
            }
            Err(other) => return Err(other),
        }
    }

    // Every user, page after page.
    let mut users = std::pin::pin!(wharf.users());
    let mut count = 0;
    while let Some(user) = users.try_next().await? {
        println!(
            "{}  {}  {}",
            user.username, user.home_directory, user.description
        );
        count += 1;
    }
    println!("{count} users in all");
    Ok(())
}
