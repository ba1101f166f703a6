//! The CLI commands that talk to the REST API (`wharf users …`, `wharf buckets …`,
//! `wharf webhooks …`, `wharf events …`, `wharf objects …`).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result};
use futures::TryStreamExt;
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use wharf_client::{Client, ClientError, EventFilter, MAX_PAGE_SIZE};
use wharf_core::api::{
    Ban, BanList, Bucket, BucketObject, CreateBucketRequest, CreateUserRequest,
    CreateWebhookRequest, Delivery, DeliveryList, DeliveryState, EventList, MAX_OBJECT_PAGE_SIZE,
    ObjectKind, ObjectList, PasswordOptions, UpdateUserRequest, UpdateWebhookRequest, User,
    Webhook, WebhookFilter, WebhookList,
};
use wharf_core::{BucketName, Event, EventPayload, HomeDirectory, Username};

use crate::cli::{
    ApiArgs, BansCommand, BucketsCommand, ChosenPassword, EventsCommand, ObjectsCommand,
    UsersCommand, WebhooksCommand,
};

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

/// `path` with a leading `~` component replaced by the home directory (`$HOME`), as a shell
/// would do: `@~/.ssh/id_ed25519.pub` reaches no shell, which expands only bare words.
/// `~user` and a `~` anywhere else stay as they are.
fn expand_tilde(path: &Path) -> Result<PathBuf> {
    let mut components = path.components();
    match components.next() {
        Some(Component::Normal(first)) if first == "~" => {
            let home = std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .context("cannot expand '~': HOME is not set")?;
            Ok(PathBuf::from(home).join(components.as_path()))
        }
        _ => Ok(path.to_owned()),
    }
}

/// Reads `@path` arguments as files of key lines; other arguments are key lines themselves.
fn public_keys(args: &[String]) -> Result<Vec<String>> {
    let mut keys = Vec::new();
    for arg in args {
        if let Some(path) = arg.strip_prefix('@') {
            let file = expand_tilde(Path::new(path))?;
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read public key file {}", file.display()))?;
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

/// More than any password the API accepts (128 characters of up to 4 bytes), so a wrong file
/// or a stream is refused here without reading it all.
const MAX_PASSWORD_INPUT: u64 = 4096;

/// The password the operator chose with `--password-stdin` or `--password-file`, if any: one
/// line, its line break dropped. The API checks the rest (length, characters) and names the
/// field; nothing here prints or logs it.
fn chosen_password(choice: &ChosenPassword) -> Result<Option<String>> {
    let (mut input, source): (Box<dyn Read>, String) = if choice.password_stdin {
        (Box::new(std::io::stdin()), "standard input".to_owned())
    } else if let Some(path) = &choice.password_file {
        let path = expand_tilde(path)?;
        let file = std::fs::File::open(&path)
            .with_context(|| format!("cannot read the password file {}", path.display()))?;
        (Box::new(file), path.display().to_string())
    } else {
        return Ok(None);
    };
    let mut bytes = Vec::new();
    input
        .by_ref()
        .take(MAX_PASSWORD_INPUT + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read the password from {source}"))?;
    anyhow::ensure!(
        bytes.len() as u64 <= MAX_PASSWORD_INPUT,
        "the password from {source} is far longer than 128 characters"
    );
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("the password from {source} is not UTF-8 text"))?;
    let password = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    anyhow::ensure!(!password.is_empty(), "no password in {source}");
    Ok(Some(password.to_owned()))
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
            password,
            password_enabled,
            max_sessions,
        } => {
            let chosen = chosen_password(&password)?;
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
                password_options: password_options(password.password_length),
                password: chosen.clone(),
                password_enabled,
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
            if chosen.is_some() {
                // The operator has it already; a terminal's scrollback need not keep it too.
                println!("  Password:     the one given");
            } else {
                println!("  Password:     {}", created.password);
                println!("                (shown only this once: store it now)");
            }
            if !user.password_enabled {
                println!("  Login:        public keys only (password login is off)");
                if user.public_keys.is_empty() {
                    println!(
                        "                no public key yet: add one with `wharf users update {} \
                         --public-key @FILE` before the partner can log in",
                        user.username
                    );
                }
            }
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
                    if let Some(fingerprint) = &info.ftps_certificate_sha256 {
                        println!("  FTPS cert:    SHA-256 {fingerprint}");
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
            password_enabled,
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
                password_enabled,
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
            password,
        } => {
            let client = client(&api)?;
            let chosen = chosen_password(&password)?;
            let new = match &chosen {
                Some(chosen) => client.set_password(&username, chosen).await?,
                None => {
                    client
                        .reset_password(&username, password_options(password.password_length))
                        .await?
                }
            };
            if api.json {
                return print_json(&new);
            }
            if chosen.is_some() {
                println!("Set the password given for {username}; the old one no longer works");
            } else {
                println!("New password for {username}: {}", new.password);
                println!("(shown only this once; the old password no longer works)");
            }
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
            let rows = list
                .items
                .iter()
                .map(|b| {
                    let default = if b.is_default { "yes" } else { "" };
                    vec![
                        b.bucket_name.to_string(),
                        default.to_owned(),
                        b.storage_url.clone(),
                    ]
                })
                .collect::<Vec<_>>();
            print_table(
                &[
                    Column::left("BUCKET", 32),
                    Column::left("DEFAULT", 7),
                    Column::last("STORAGE"),
                ],
                &rows,
            );
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
    println!(
        "Password login:  {}",
        if user.password_enabled {
            "on"
        } else {
            "off (public keys only)"
        }
    );
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
    let rows = users
        .iter()
        .map(|u| {
            let status = match (u.disabled, u.password_enabled) {
                (true, _) => "disabled",
                (false, false) => "keys only",
                (false, true) => "active",
            };
            vec![
                u.username.to_string(),
                u.description.clone(),
                u.home_directory.to_string(),
                u.permissions.to_string(),
                status.to_owned(),
                u.last_connected_at
                    .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                    .unwrap_or_else(|| "never".into()),
            ]
        })
        .collect::<Vec<_>>();
    print_table(
        &[
            Column::left("USERNAME", 32),
            Column::left("DESCRIPTION", 32),
            Column::left("HOME", 32),
            Column::left("PERMISSIONS", 11),
            Column::left("STATUS", 9),
            Column::last("LAST CONNECTED"),
        ],
        &rows,
    );
}

/// A column of a text table.
struct Column {
    heading: &'static str,
    /// The widest the column grows; longer cells are cut, ending in '…'.
    max: usize,
    /// Right-aligned (numbers).
    right: bool,
}

impl Column {
    fn left(heading: &'static str, max: usize) -> Column {
        Column {
            heading,
            max,
            right: false,
        }
    }

    fn right(heading: &'static str, max: usize) -> Column {
        Column {
            heading,
            max,
            right: true,
        }
    }

    /// The last column: never padded or cut (ids, keys and URLs stay whole there).
    fn last(heading: &'static str) -> Column {
        Self::left(heading, usize::MAX)
    }
}

/// `text` in at most `width` characters: cut, with '…' as the last one, when longer, so a
/// reader sees that something is missing.
fn ellipsize(text: &str, width: usize) -> Cow<'_, str> {
    if text.chars().count() <= width {
        return Cow::Borrowed(text);
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    Cow::Owned(cut)
}

/// The lines of a table: each column as wide as its widest cell (at most its `max`), one
/// space between columns. Widths count characters, which is what terminals show for the
/// ASCII and Latin text usernames, homes and keys are made of.
fn table_lines(columns: &[Column], rows: &[Vec<String>]) -> Vec<String> {
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, column)| {
            rows.iter()
                .filter_map(|row| row.get(i))
                .map(|cell| cell.chars().count())
                .chain([column.heading.chars().count()])
                .max()
                .unwrap_or(0)
                .min(column.max)
        })
        .collect();
    let headings: Vec<String> = columns.iter().map(|c| c.heading.to_owned()).collect();
    std::iter::once(&headings)
        .chain(rows)
        .map(|row| {
            let mut line = String::new();
            for (i, (column, width)) in columns.iter().zip(&widths).enumerate() {
                let cell = ellipsize(row.get(i).map_or("", String::as_str), *width);
                if i > 0 {
                    line.push(' ');
                }
                if i + 1 == columns.len() {
                    line.push_str(&cell);
                } else if column.right {
                    line.push_str(&format!("{cell:>width$}"));
                } else {
                    line.push_str(&format!("{cell:<width$}"));
                }
            }
            line.trim_end().to_owned()
        })
        .collect()
}

fn print_table(columns: &[Column], rows: &[Vec<String>]) {
    for line in table_lines(columns, rows) {
        println!("{line}");
    }
}

fn bucket_name(s: &str) -> Result<BucketName> {
    BucketName::parse(s).with_context(|| format!("invalid --bucket '{s}'"))
}

fn username(s: &str) -> Result<Username> {
    Username::parse(s).with_context(|| format!("invalid --username '{s}'"))
}

/// Up to `limit` items from consecutive pages starting at `page_token`, and the token of what
/// follows them (`None` when nothing does). `fetch(size, token)` gets one page.
async fn collect_pages<T, F, Fut>(
    limit: u32,
    mut page_token: Option<String>,
    mut fetch: F,
) -> Result<(Vec<T>, Option<String>)>
where
    F: FnMut(u32, Option<String>) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, Option<String>), ClientError>>,
{
    let mut items = Vec::new();
    loop {
        let remaining = limit.saturating_sub(items.len() as u32);
        if remaining == 0 {
            break;
        }
        let (page, next) = fetch(remaining.min(MAX_PAGE_SIZE), page_token.take()).await?;
        items.extend(page);
        page_token = next;
        if page_token.is_none() {
            break;
        }
    }
    Ok((items, page_token))
}

pub async fn bans(command: BansCommand) -> Result<()> {
    match command {
        BansCommand::List { api } => {
            let items: Vec<Ban> = client(&api)?.bans().try_collect().await?;
            if api.json {
                return print_json(&BanList {
                    items,
                    next_page_token: None,
                });
            }
            if items.is_empty() {
                println!("No bans in force.");
                return Ok(());
            }
            let rows = items
                .iter()
                .map(|b| {
                    vec![
                        b.kind.to_string(),
                        b.target.clone(),
                        b.banned_until.format("%Y-%m-%d %H:%M:%S").to_string(),
                        b.ban_count.to_string(),
                    ]
                })
                .collect::<Vec<_>>();
            print_table(
                &[
                    Column::left("KIND", 7),
                    Column::left("TARGET", usize::MAX),
                    Column::left("UNTIL", 20),
                    Column::last("BANS IN A ROW"),
                ],
                &rows,
            );
            Ok(())
        }
        BansCommand::Lift { api, address, user } => {
            let client = client(&api)?;
            let lifted = match (address, user) {
                (Some(address), _) => {
                    client.lift_address_ban(address).await?;
                    address.to_string()
                }
                (None, Some(user)) => {
                    client.lift_user_ban(&user).await?;
                    user
                }
                (None, None) => anyhow::bail!("give --address or --user"),
            };
            if api.json {
                return print_json(&serde_json::json!({ "lifted": lifted }));
            }
            println!("Lifted the ban of {lifted}");
            Ok(())
        }
    }
}

pub async fn webhooks(command: WebhooksCommand) -> Result<()> {
    match command {
        WebhooksCommand::Create {
            api,
            url,
            events,
            bucket,
            prefix,
            username: user,
            description,
        } => {
            let filter = WebhookFilter {
                bucket_name: bucket.as_deref().map(bucket_name).transpose()?,
                prefix,
                username: user.as_deref().map(username).transpose()?,
            };
            let request = CreateWebhookRequest {
                url,
                events,
                filter: (filter != WebhookFilter::default()).then_some(filter),
                description,
            };
            let created = client(&api)?.create_webhook(&request).await?;
            if api.json {
                return print_json(&created);
            }
            println!("Created webhook {}", created.webhook.id);
            println!("  Secret:       {}", created.secret);
            println!(
                "                (shown only this once: it is not shown again. Store it now and \
                 give it to the receiver to verify signatures)"
            );
            print_webhook_details(&created.webhook, "  ");
            Ok(())
        }
        WebhooksCommand::List { api } => {
            let items: Vec<Webhook> = client(&api)?.webhooks().try_collect().await?;
            if api.json {
                return print_json(&WebhookList {
                    items,
                    next_page_token: None,
                });
            }
            let rows = items
                .iter()
                .map(|w| {
                    let enabled = match (w.enabled, &w.paused_reason) {
                        (false, _) => "no",
                        (true, Some(_)) => "paused",
                        (true, None) => "yes",
                    };
                    vec![
                        w.id.clone(),
                        enabled.to_owned(),
                        event_types(w),
                        w.url.clone(),
                        describe_filter(&w.filter),
                    ]
                })
                .collect::<Vec<_>>();
            // Ids stay whole: they are what the other webhook commands take.
            print_table(
                &[
                    Column::left("ID", usize::MAX),
                    Column::left("ENABLED", 7),
                    Column::left("EVENTS", 40),
                    Column::left("URL", 48),
                    Column::last("FILTER"),
                ],
                &rows,
            );
            Ok(())
        }
        WebhooksCommand::Get { api, id } => {
            let webhook = client(&api)?.get_webhook(&id).await?;
            if api.json {
                return print_json(&webhook);
            }
            print_webhook(&webhook);
            Ok(())
        }
        WebhooksCommand::Update {
            api,
            id,
            url,
            events,
            bucket,
            prefix,
            username: user,
            clear_filter,
            description,
            enable,
            disable,
        } => {
            let client = client(&api)?;
            // The API replaces the whole filter: change only the parts given.
            let filter = if clear_filter {
                Some(WebhookFilter::default())
            } else if bucket.is_some() || prefix.is_some() || user.is_some() {
                let mut filter = client.get_webhook(&id).await?.filter;
                if let Some(b) = bucket {
                    filter.bucket_name = (!b.is_empty()).then(|| bucket_name(&b)).transpose()?;
                }
                if let Some(p) = prefix {
                    filter.prefix = (!p.is_empty()).then_some(p);
                }
                if let Some(u) = user {
                    filter.username = (!u.is_empty()).then(|| username(&u)).transpose()?;
                }
                Some(filter)
            } else {
                None
            };
            let request = UpdateWebhookRequest {
                url,
                events: (!events.is_empty()).then_some(events),
                filter,
                description,
                enabled: match (enable, disable) {
                    (true, _) => Some(true),
                    (_, true) => Some(false),
                    _ => None,
                },
            };
            let webhook = client.update_webhook(&id, &request).await?;
            if api.json {
                return print_json(&webhook);
            }
            print_webhook(&webhook);
            Ok(())
        }
        WebhooksCommand::Delete { api, id } => {
            client(&api)?.delete_webhook(&id).await?;
            if api.json {
                return print_json(&serde_json::json!({ "deleted": id }));
            }
            println!("Deleted webhook {id} (with its pending deliveries; the events stay)");
            Ok(())
        }
        WebhooksCommand::Test { api, id } => {
            let delivery = client(&api)?.test_webhook(&id).await?;
            if api.json {
                return print_json(&delivery);
            }
            println!("Queued test delivery {} to webhook {id}", delivery.id);
            println!("Follow it with: wharf webhooks deliveries {id}");
            Ok(())
        }
        WebhooksCommand::Deliveries {
            api,
            id,
            limit,
            page_token,
        } => {
            let client = client(&api)?;
            let (items, next_page_token) = collect_pages(limit, page_token, |size, token| {
                let (client, id) = (&client, &id);
                async move {
                    let page = client
                        .webhook_deliveries(id, Some(size), token.as_deref())
                        .await?;
                    Ok((page.items, page.next_page_token))
                }
            })
            .await?;
            if api.json {
                return print_json(&DeliveryList {
                    items,
                    next_page_token,
                });
            }
            let rows = items
                .iter()
                .map(|d| {
                    vec![
                        d.id.clone(),
                        d.event_type.to_string(),
                        delivery_state(d.status).to_owned(),
                        d.attempt_count.to_string(),
                        d.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                        last_attempt(d),
                    ]
                })
                .collect::<Vec<_>>();
            print_table(
                &[
                    Column::left("DELIVERY", usize::MAX),
                    Column::left("EVENT TYPE", 24),
                    Column::left("STATUS", 9),
                    Column::right("ATTEMPTS", 8),
                    Column::left("CREATED", 19),
                    Column::last("LAST ATTEMPT"),
                ],
                &rows,
            );
            more_hint(
                next_page_token.as_deref(),
                &format!("wharf webhooks deliveries {id}"),
            );
            Ok(())
        }
        WebhooksCommand::Retry {
            api,
            id,
            delivery_id,
        } => {
            let delivery = client(&api)?.retry_delivery(&id, &delivery_id).await?;
            if api.json {
                return print_json(&delivery);
            }
            println!(
                "Delivery {} of event {} is {} again; follow it with: wharf webhooks deliveries {id}",
                delivery.id,
                delivery.event_id,
                delivery_state(delivery.status)
            );
            Ok(())
        }
    }
}

pub async fn events(command: EventsCommand) -> Result<()> {
    match command {
        EventsCommand::List {
            api,
            event_type,
            username,
            prefix,
            bucket,
            limit,
            page_token,
        } => {
            let filter = EventFilter {
                event_type,
                username,
                prefix,
                bucket_name: bucket,
            };
            let client = client(&api)?;
            let (items, next_page_token) = collect_pages(limit, page_token, |size, token| {
                let (client, filter) = (&client, &filter);
                async move {
                    let page = client
                        .list_events(filter, Some(size), token.as_deref())
                        .await?;
                    Ok((page.items, page.next_page_token))
                }
            })
            .await?;
            if api.json {
                return print_json(&EventList {
                    items,
                    next_page_token,
                });
            }
            let rows = items
                .iter()
                .map(|e| {
                    vec![
                        e.time.format("%Y-%m-%d %H:%M:%S").to_string(),
                        e.event_type.to_string(),
                        e.data.username().unwrap_or_default().to_owned(),
                        e.data.protocol().map(|p| p.to_string()).unwrap_or_default(),
                        e.data
                            .file()
                            .and_then(|d| d.size)
                            .map(|s| s.to_string())
                            .unwrap_or_default(),
                        e.data.subject(),
                    ]
                })
                .collect::<Vec<_>>();
            print_table(
                &[
                    Column::left("TIME", 19),
                    Column::left("TYPE", 18),
                    Column::left("USERNAME", 24),
                    Column::left("VIA", 5),
                    Column::right("SIZE", 20),
                    Column::last("KEY"),
                ],
                &rows,
            );
            more_hint(next_page_token.as_deref(), "wharf events list");
            Ok(())
        }
        EventsCommand::Get { api, id } => {
            let event = client(&api)?.get_event(&id).await?;
            if api.json {
                return print_json(&event);
            }
            print_event(&event);
            Ok(())
        }
    }
}

pub async fn objects(command: ObjectsCommand) -> Result<()> {
    match command {
        ObjectsCommand::List {
            api,
            bucket,
            prefix,
            limit,
            mut page_token,
        } => {
            let client = client(&api)?;
            let mut items = Vec::new();
            loop {
                let size = limit
                    .saturating_sub(items.len() as u32)
                    .min(MAX_OBJECT_PAGE_SIZE);
                if size == 0 {
                    break;
                }
                let page = client
                    .list_objects_page(&bucket, &prefix, Some(size), page_token.as_deref())
                    .await?;
                items.extend(page.items);
                page_token = page.next_page_token;
                if page_token.is_none() {
                    break;
                }
            }
            if api.json {
                return print_json(&ObjectList {
                    items,
                    next_page_token: page_token,
                });
            }
            let rows = items.iter().map(object_row).collect::<Vec<_>>();
            print_table(
                &[
                    Column::left("TYPE", 4),
                    Column::right("SIZE", 20),
                    Column::left("MODIFIED", 19),
                    Column::last("KEY"),
                ],
                &rows,
            );
            more_hint(
                page_token.as_deref(),
                &format!("wharf objects list {bucket} --prefix '{prefix}'"),
            );
            Ok(())
        }
        ObjectsCommand::Get {
            api,
            bucket,
            key,
            output,
        } => {
            let client = client(&api)?;
            let mut download = client.get_object(&bucket, &key).await?;
            let to_stdout = output.as_deref() == Some(std::path::Path::new("-"));
            let written = if to_stdout {
                let mut out = tokio::io::stdout();
                let n = copy_download(&mut download, &mut out).await?;
                out.flush().await?;
                n
            } else {
                let target = match output {
                    Some(path) => path,
                    None => {
                        let name = key.trim_end_matches('/').rsplit('/').next().unwrap_or("");
                        anyhow::ensure!(
                            !name.is_empty() && name != "." && name != "..",
                            "cannot name a file after key '{key}'; pass -o FILE"
                        );
                        std::path::PathBuf::from(name)
                    }
                };
                let mut partial = target.clone().into_os_string();
                partial.push(".part");
                let partial = std::path::PathBuf::from(partial);
                let mut file = tokio::fs::File::create(&partial)
                    .await
                    .with_context(|| format!("cannot create {}", partial.display()))?;
                let copied = copy_download(&mut download, &mut file).await;
                let finished = match copied {
                    Ok(n) => file
                        .sync_all()
                        .await
                        .map(|()| n)
                        .map_err(anyhow::Error::from),
                    Err(e) => Err(e),
                };
                let n = match finished {
                    Ok(n) => n,
                    Err(e) => {
                        let _ = tokio::fs::remove_file(&partial).await;
                        return Err(e.context(format!("downloading {key} failed")));
                    }
                };
                tokio::fs::rename(&partial, &target)
                    .await
                    .with_context(|| format!("cannot rename to {}", target.display()))?;
                if api.json {
                    print_json(&serde_json::json!({
                        "bucketName": bucket,
                        "key": key,
                        "size": n,
                        "file": target,
                    }))?;
                } else {
                    println!("Downloaded {key} ({n} bytes) to {}", target.display());
                }
                n
            };
            if let Some(expected) = download.size() {
                anyhow::ensure!(
                    written == expected,
                    "the download ended after {written} of {expected} bytes"
                );
            }
            Ok(())
        }
        ObjectsCommand::Put {
            api,
            bucket,
            key,
            file,
        } => {
            let object = client(&api)?.put_object_file(&bucket, &key, &file).await?;
            if api.json {
                return print_json(&object);
            }
            println!(
                "Uploaded {} ({} bytes, SHA-256 {})",
                object.key,
                object.size,
                object.sha256.as_deref().unwrap_or("-")
            );
            Ok(())
        }
        ObjectsCommand::Mkdir { api, bucket, key } => {
            let object = client(&api)?.create_directory(&bucket, &key).await?;
            if api.json {
                return print_json(&object);
            }
            println!("Directory {}/ is there", object.key);
            Ok(())
        }
        ObjectsCommand::Delete {
            api,
            bucket,
            key,
            recursive,
        } => {
            client(&api)?
                .delete_objects(&bucket, &key, recursive)
                .await?;
            if api.json {
                return print_json(&serde_json::json!({ "deleted": key }));
            }
            println!("Deleted {key}");
            Ok(())
        }
    }
}

/// Writes the rest of `download` to `out`; returns the bytes written.
async fn copy_download(
    download: &mut wharf_client::ObjectDownload,
    out: &mut (impl tokio::io::AsyncWrite + Unpin),
) -> Result<u64> {
    let mut written = 0u64;
    while let Some(chunk) = download.chunk().await? {
        out.write_all(&chunk).await?;
        written += chunk.len() as u64;
    }
    Ok(written)
}

fn object_row(object: &BucketObject) -> Vec<String> {
    let (kind, size, key) = match object.kind {
        ObjectKind::Directory => ("dir", "-".to_owned(), format!("{}/", object.key)),
        ObjectKind::File => ("file", object.size.to_string(), object.key.clone()),
    };
    let modified = object
        .last_modified
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "-".to_owned());
    vec![kind.to_owned(), size, modified, key]
}

/// Tells how to see the next page (on stderr, so the table stays clean for scripts).
fn more_hint(next_page_token: Option<&str>, command: &str) {
    if let Some(token) = next_page_token {
        eprintln!("more: {command} --page-token {token} (with the same filters)");
    }
}

fn event_types(webhook: &Webhook) -> String {
    webhook
        .events
        .iter()
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn describe_filter(filter: &WebhookFilter) -> String {
    let mut parts = Vec::new();
    if let Some(b) = &filter.bucket_name {
        parts.push(format!("bucket={b}"));
    }
    if let Some(p) = &filter.prefix {
        parts.push(format!("prefix={p}"));
    }
    if let Some(u) = &filter.username {
        parts.push(format!("username={u}"));
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(" ")
    }
}

fn print_webhook(webhook: &Webhook) {
    println!("Id:           {}", webhook.id);
    print_webhook_details(webhook, "");
}

fn print_webhook_details(webhook: &Webhook, indent: &str) {
    println!("{indent}URL:          {}", webhook.url);
    println!("{indent}Events:       {}", event_types(webhook));
    println!("{indent}Filter:       {}", describe_filter(&webhook.filter));
    if !webhook.description.is_empty() {
        println!("{indent}Description:  {}", webhook.description);
    }
    println!("{indent}Enabled:      {}", webhook.enabled);
    if let Some(reason) = &webhook.paused_reason {
        println!(
            "{indent}Paused:       {reason} (resume: wharf webhooks update {} --enable)",
            webhook.id
        );
    }
    println!("{indent}Created:      {}", webhook.created_at.to_rfc3339());
}

fn delivery_state(state: DeliveryState) -> &'static str {
    match state {
        DeliveryState::Pending => "pending",
        DeliveryState::Succeeded => "succeeded",
        DeliveryState::Dead => "dead",
    }
}

fn last_attempt(delivery: &Delivery) -> String {
    let Some(attempt) = delivery.attempts.last() else {
        return match delivery.next_attempt_at {
            Some(t) => format!("none yet (due {})", t.format("%H:%M:%S")),
            None => "none".into(),
        };
    };
    let mut s = match attempt.status_code {
        Some(code) => format!("HTTP {code}"),
        None => "no answer".into(),
    };
    s.push_str(&format!(" in {} ms", attempt.latency_ms));
    if let Some(error) = &attempt.error {
        s.push_str(&format!(": {error}"));
    }
    if let (DeliveryState::Pending, Some(t)) = (delivery.status, delivery.next_attempt_at) {
        s.push_str(&format!("; next at {}", t.format("%H:%M:%S")));
    }
    s
}

fn print_event(event: &Event) {
    println!("Id:          {}", event.id);
    println!("Type:        {}", event.event_type);
    println!("Time:        {}", event.time.to_rfc3339());
    match &event.data {
        EventPayload::File(data) => {
            println!("Bucket:      {}", data.bucket_name);
            println!("Key:         {}", data.key);
            if let Some(previous) = &data.previous_key {
                println!("Previous:    {previous}");
            }
            if let Some(size) = data.size {
                println!("Size:        {size}");
            }
            if let Some(sha256) = &data.sha256 {
                println!("SHA-256:     {sha256}");
            }
            println!("Username:    {}", data.username);
            println!("Protocol:    {}", data.protocol);
            println!("Client IP:   {}", data.client_ip);
            println!("Session:     {}", data.session_id);
            if let Some(error) = &data.error {
                println!("Error:       {error}");
            }
        }
        EventPayload::LoginFailed(data) => {
            println!("Username:    {}", data.username);
            println!("Protocol:    {}", data.protocol);
            println!("Method:      {}", data.method.as_str());
            println!("Reason:      {}", data.reason.as_str());
            println!("Client IP:   {}", data.client_ip);
            println!("Session:     {}", data.session_id);
        }
        EventPayload::Ban(data) => {
            if let Some(address) = &data.address {
                println!("Address:     {address}");
            }
            if let Some(username) = &data.username {
                println!("Username:    {username}");
            }
            println!("Until:       {}", data.until.to_rfc3339());
            println!("Ban count:   {}", data.ban_count);
            println!("Client IP:   {}", data.client_ip);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_cells_are_cut_with_an_ellipsis_and_columns_line_up() {
        let columns = [
            Column::left("NAME", 8),
            Column::right("SIZE", 6),
            Column::last("KEY"),
        ];
        let rows = vec![
            vec!["alice".to_owned(), "5".to_owned(), "a/b".to_owned()],
            vec![
                "a-much-longer-name".to_owned(),
                "123456".to_owned(),
                "a key that is long and stays whole".to_owned(),
            ],
        ];
        let lines = table_lines(&columns, &rows);
        assert_eq!(
            lines,
            [
                "NAME       SIZE KEY",
                "alice         5 a/b",
                "a-much-… 123456 a key that is long and stays whole",
            ]
        );
        // Narrow content makes narrow columns (no wider than the heading).
        let lines = table_lines(&columns, &[vec!["x".into(), "1".into(), "k".into()]]);
        assert_eq!(lines, ["NAME SIZE KEY", "x       1 k"]);
    }

    #[test]
    fn ellipsis_counts_characters_not_bytes() {
        assert_eq!(ellipsize("ünïcödé", 7), "ünïcödé");
        assert_eq!(ellipsize("ünïcödé", 4), "ünï…");
        assert_eq!(ellipsize("abc", 1), "…");
    }

    #[test]
    fn a_leading_tilde_is_the_home_directory() {
        // HOME is only read here, so this test cannot race another one.
        let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) else {
            return;
        };
        let home = PathBuf::from(home);
        assert_eq!(
            expand_tilde(Path::new("~/.ssh/id_ed25519.pub")).unwrap(),
            home.join(".ssh/id_ed25519.pub")
        );
        assert_eq!(expand_tilde(Path::new("~")).unwrap(), home);
        for unchanged in ["~bob/key.pub", "keys/~/x", "/abs/~/x", "./~", "key.pub"] {
            assert_eq!(
                expand_tilde(Path::new(unchanged)).unwrap(),
                PathBuf::from(unchanged)
            );
        }
    }
}
