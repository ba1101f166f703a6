//! The CLI commands that talk to the REST API (`wharf users …`, `wharf buckets …`).

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{Context, Result};
use futures::TryStreamExt;
use serde::Serialize;
use wharf_client::{Client, ClientError};
use wharf_core::api::{
    Bucket, CreateBucketRequest, CreateUserRequest, PasswordOptions, UpdateUserRequest, User,
};
use wharf_core::{BucketName, HomeDirectory, Username};

use crate::cli::{ApiArgs, BucketsCommand, UsersCommand};

fn client(api: &ApiArgs) -> Result<Client> {
    let key = match &api.api_key {
        Some(k) => Some(k.trim().to_owned()),
        None => {
            let path = api.data_dir.join("admin-api-key");
            match std::fs::read_to_string(&path) {
                Ok(k) => Some(k.trim().to_owned()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot read {}", path.display()));
                }
            }
        }
    };
    if key.is_none() {
        eprintln!(
            "warning: no API key: set WHARF_API_KEY, pass --api-key, or run where {} exists",
            api.data_dir.join("admin-api-key").display()
        );
    }
    Ok(Client::new(&api.api_url, key)?)
}

fn print_json<T: Serialize>(value: &T) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Reads `@path` arguments as files of key lines; other arguments are key lines themselves.
fn public_keys(args: &[String]) -> Result<Vec<String>> {
    let mut keys = Vec::new();
    for arg in args {
        if let Some(path) = arg.strip_prefix('@') {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read public key file {path}"))?;
            keys.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(str::to_owned),
            );
        } else {
            keys.push(arg.clone());
        }
    }
    Ok(keys)
}

fn home(s: &str) -> Result<HomeDirectory> {
    HomeDirectory::parse(s).with_context(|| format!("invalid --home '{s}'"))
}

fn password_options(length: Option<u32>) -> Option<PasswordOptions> {
    length.map(|l| PasswordOptions { length: Some(l) })
}

pub async fn users(command: UsersCommand) -> Result<()> {
    match command {
        UsersCommand::Create {
            api,
            description,
            home: home_dir,
            username,
            bucket,
            permissions,
            public_keys: keys,
            password_length,
            max_sessions,
        } => {
            let request = CreateUserRequest {
                description,
                home_directory: home(&home_dir)?,
                username: username
                    .map(|u| {
                        Username::parse(&u).with_context(|| format!("invalid --username '{u}'"))
                    })
                    .transpose()?,
                bucket_name: bucket
                    .map(|b| {
                        BucketName::parse(&b).with_context(|| format!("invalid --bucket '{b}'"))
                    })
                    .transpose()?,
                password_options: password_options(password_length),
                public_keys: if keys.is_empty() {
                    None
                } else {
                    Some(public_keys(&keys)?)
                },
                permissions: permissions.map(Into::into),
                max_sessions,
            };
            let client = client(&api)?;
            let created = client.create_user(&request).await?;
            if api.json {
                return print_json(&created);
            }
            let user = &created.user;
            // Best effort: the connection hint needs the SFTP port and host keys.
            let info = client.server_info().await.ok();
            println!("Created user {} ({})", user.username, user.description);
            println!("  Username:     {}", user.username);
            println!("  Password:     {}", created.password);
            println!("                (shown only this once: store it now)");
            println!("  Home:         {}", user.home_directory);
            println!("  Permissions:  {}", user.permissions);
            println!("  Max sessions: {}", user.max_sessions);
            match info {
                Some(info) => {
                    println!(
                        "  Connect:      sftp -P {} {}@{}",
                        info.sftp_port, user.username, info.endpoint
                    );
                    for key in &info.host_keys {
                        println!("  Host key:     {} {}", key.algorithm, key.fingerprint);
                    }
                }
                None => println!(
                    "  Connect:      sftp -P 2222 {}@{}",
                    user.username, user.endpoint
                ),
            }
            Ok(())
        }
        UsersCommand::List {
            api,
            page_size,
            page_token,
        } => {
            let client = client(&api)?;
            let users: Vec<User> = if page_token.is_some() || (api.json && page_size.is_some()) {
                let page = client.list_users(page_size, page_token.as_deref()).await?;
                if api.json {
                    return print_json(&page);
                }
                page.items
            } else {
                client.users().try_collect().await?
            };
            if api.json {
                return print_json(&serde_json::json!({ "items": users }));
            }
            print_user_table(&users);
            Ok(())
        }
        UsersCommand::Get { api, username } => {
            let user = client(&api)?.get_user(&username).await?;
            if api.json {
                return print_json(&user);
            }
            print_user(&user);
            Ok(())
        }
        UsersCommand::Update {
            api,
            username,
            description,
            home: home_dir,
            permissions,
            public_keys: keys,
            clear_public_keys,
            disable,
            enable,
            max_sessions,
        } => {
            let request = UpdateUserRequest {
                description,
                home_directory: home_dir.as_deref().map(home).transpose()?,
                permissions: permissions.map(Into::into),
                public_keys: if clear_public_keys {
                    Some(Vec::new())
                } else if keys.is_empty() {
                    None
                } else {
                    Some(public_keys(&keys)?)
                },
                disabled: match (disable, enable) {
                    (true, _) => Some(true),
                    (_, true) => Some(false),
                    _ => None,
                },
                max_sessions,
            };
            let user = client(&api)?.update_user(&username, &request).await?;
            if api.json {
                return print_json(&user);
            }
            print_user(&user);
            Ok(())
        }
        UsersCommand::Delete { api, username } => {
            client(&api)?.delete_user(&username).await?;
            if api.json {
                return print_json(&serde_json::json!({ "deleted": username }));
            }
            println!("Deleted user {username} (its files stay in the bucket)");
            Ok(())
        }
        UsersCommand::ResetPassword {
            api,
            username,
            password_length,
        } => {
            let new = client(&api)?
                .reset_password(&username, password_options(password_length))
                .await?;
            if api.json {
                return print_json(&new);
            }
            println!("New password for {username}: {}", new.password);
            println!("(shown only this once; the old password no longer works)");
            Ok(())
        }
    }
}

pub async fn buckets(command: BucketsCommand) -> Result<()> {
    match command {
        BucketsCommand::List { api } => {
            let list = client(&api)?.list_buckets().await?;
            if api.json {
                return print_json(&list);
            }
            println!("{:<24} {:<8} STORAGE", "BUCKET", "DEFAULT");
            for b in &list.items {
                let default = if b.is_default { "yes" } else { "" };
                println!("{:<24} {:<8} {}", b.bucket_name, default, b.storage_url);
            }
            Ok(())
        }
        BucketsCommand::Get { api, bucket_name } => {
            let bucket = client(&api)?.get_bucket(&bucket_name).await?;
            if api.json {
                return print_json(&bucket);
            }
            print_bucket(&bucket);
            Ok(())
        }
        BucketsCommand::Create {
            api,
            bucket_name,
            url,
            options,
        } => {
            let request = CreateBucketRequest {
                bucket_name: BucketName::parse(&bucket_name)
                    .with_context(|| format!("invalid bucket name '{bucket_name}'"))?,
                storage_url: url,
                options: if options.is_empty() {
                    None
                } else {
                    Some(bucket_options(&options)?)
                },
            };
            let bucket = client(&api)?.create_bucket(&request).await?;
            if api.json {
                return print_json(&bucket);
            }
            println!("Registered bucket {}", bucket.bucket_name);
            print_bucket(&bucket);
            Ok(())
        }
        BucketsCommand::Delete { api, bucket_name } => {
            client(&api)?.delete_bucket(&bucket_name).await?;
            if api.json {
                return print_json(&serde_json::json!({ "deleted": bucket_name }));
            }
            println!("Deleted bucket {bucket_name} (its objects stay in the store)");
            Ok(())
        }
    }
}

fn print_bucket(bucket: &Bucket) {
    println!("Bucket:   {}", bucket.bucket_name);
    println!("Storage:  {}", bucket.storage_url);
    println!("Default:  {}", bucket.is_default);
    if !bucket.option_keys.is_empty() {
        println!(
            "Options:  {} (values hidden)",
            bucket.option_keys.join(", ")
        );
    }
    println!("Created:  {}", bucket.created_at.to_rfc3339());
}

/// `key=value` arguments as a map; a key given twice is an error (one would silently win).
fn bucket_options(args: &[String]) -> Result<BTreeMap<String, String>> {
    let mut options = BTreeMap::new();
    for arg in args {
        let Some((key, value)) = arg.split_once('=') else {
            // Never echo the argument: it may be a credential.
            anyhow::bail!("--option takes key=value (an option without '=' was given)");
        };
        let key = key.trim();
        anyhow::ensure!(
            !key.is_empty(),
            "--option takes key=value (an empty key was given)"
        );
        anyhow::ensure!(
            options.insert(key.to_owned(), value.to_owned()).is_none(),
            "--option {key} is given twice"
        );
    }
    Ok(options)
}

fn print_user(user: &User) {
    println!("Username:        {}", user.username);
    println!("Description:     {}", user.description);
    println!("Home:            {}", user.home_directory);
    println!("Bucket:          {}", user.bucket_name);
    println!("Permissions:     {}", user.permissions);
    println!("Disabled:        {}", user.disabled);
    println!("Max sessions:    {}", user.max_sessions);
    println!("Public keys:     {}", user.public_keys.len());
    for key in &user.public_keys {
        println!("  {key}");
    }
    println!("Created:         {}", user.created_at.to_rfc3339());
    match user.last_connected_at {
        Some(t) => println!("Last connected:  {}", t.to_rfc3339()),
        None => println!("Last connected:  never"),
    }
}

fn print_user_table(users: &[User]) {
    println!(
        "{:<12} {:<28} {:<24} {:<11} LAST CONNECTED",
        "USERNAME", "DESCRIPTION", "HOME", "PERMISSIONS"
    );
    for u in users {
        let mut description: String = u.description.chars().take(27).collect();
        if u.disabled {
            description = format!(
                "{} (disabled)",
                description.chars().take(16).collect::<String>()
            );
        }
        println!(
            "{:<12} {:<28} {:<24} {:<11} {}",
            u.username,
            description,
            u.home_directory,
            u.permissions,
            u.last_connected_at
                .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                .unwrap_or_else(|| "never".into())
        );
    }
}

/// Turns client errors into messages that say what to do.
pub fn explain(error: &anyhow::Error) -> Option<String> {
    match error.downcast_ref::<ClientError>()? {
        ClientError::Http(e) if e.is_connect() => Some(
            "cannot connect to the Wharf API: is `wharf serve` running, and is WHARF_API_URL right?"
                .into(),
        ),
        ClientError::Api { status: 401, .. } => Some(
            "the API key was refused: set WHARF_API_KEY (the admin key is in <data-dir>/admin-api-key)"
                .into(),
        ),
        _ => None,
    }
}
