//! The long-running modes: `serve` (all in one), `control-plane`, `sftp-gateway`,
//! `ftps-gateway`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio::sync::watch;
use wharf_control::{AdminKeySource, ControlPlane, ControlPlaneConfig};
use wharf_core::api::HostKey;
use wharf_core::{EventSink, LoginProvider};
use wharf_ftps::{FtpsConfig, FtpsListeners, TlsFiles};
use wharf_sftp::{HostKeys, SftpConfig};
use wharf_vfs::StoreCache;

use crate::cli::{
    ControlPlaneArgs, ControlPlaneOptions, FtpsGatewayArgs, FtpsOptions, ServeArgs,
    SftpGatewayArgs, SftpOptions,
};

/// How long a stopping gateway waits for transfers in progress before it exits anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn serve(args: ServeArgs) -> Result<()> {
    let data_dir = prepare_data_dir(&args.data.data_dir)?;
    let host_keys = load_host_keys(&data_dir, &args.sftp)?;
    let tls = load_tls(&data_dir, &args.ftps, &args.control.public_host)?;
    let gateway_token = gateway_token(&data_dir, args.gateway_token)?;
    let control = open_control_plane(
        &data_dir,
        &args.control,
        gateway_token,
        (
            args.sftp.sftp_addr.port(),
            args.ftps.ftps_addr.port(),
            args.ftps.ftps_implicit_addr.port(),
        ),
        fingerprints(&host_keys),
        Some(tls.cert_file.clone()),
    )
    .await?;

    let api = bind(args.control.api_addr, "API").await?;
    let sftp = bind(args.sftp.sftp_addr, "SFTP").await?;
    let ftps = bind_ftps(&args.ftps).await?;
    println!("Wharf is running.");
    println!(
        "  API:        http://{}  (docs at /docs)",
        api.local_addr()?
    );
    println!("  Console:    http://{}/ui", api.local_addr()?);
    println!("  SFTP:       {}", sftp.local_addr()?);
    print_ftps(&ftps, &args.ftps)?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let stores = Arc::new(StoreCache::new());
    let login = control.login_provider();
    let events = control.event_sink();
    let api_task = tokio::spawn(serve_api(
        api,
        wharf_console::with_console(control.router()),
        stop_rx.clone(),
    ));
    let sftp_task = tokio::spawn(serve_sftp(
        sftp,
        SftpConfig {
            events: Some(events.clone()),
            admission: args.admission.limits(),
            session_watch: args.sessions.watch_options(),
            ..sftp_config(host_keys, &args.sftp)
        },
        login.clone(),
        stores.clone(),
        stop_rx.clone(),
    ));
    let ftps_task = tokio::spawn(serve_ftps(
        ftps,
        FtpsConfig {
            events: Some(events),
            admission: args.admission.limits(),
            session_watch: args.sessions.watch_options(),
            ..ftps_config(tls, &args.ftps)
        },
        login,
        stores,
        stop_rx,
    ));
    wait_for_signal().await;
    tracing::info!("stopping: no new connections; waiting for transfers in progress");
    let _ = stop_tx.send(true);
    sftp_task.await??;
    ftps_task.await??;
    api_task.await??;
    // Deliveries being sent go back to the queue for the next start.
    control.shutdown().await;
    Ok(())
}

pub async fn control_plane(args: ControlPlaneArgs) -> Result<()> {
    let data_dir = prepare_data_dir(&args.data.data_dir)?;
    let gateway_token = gateway_token(&data_dir, args.gateway_token)?;
    // The control plane only shows host-key fingerprints; it never generates keys.
    let key_dir = args
        .host_key_dir
        .clone()
        .unwrap_or_else(|| data_dir.join("host-keys"));
    let host_keys = host_key_files(&key_dir)
        .and_then(|files| HostKeys::load(&files).ok())
        .map(|k| fingerprints(&k))
        .unwrap_or_default();
    // Nor does it make certificates: it shows the gateways' one when it can read it.
    let certificate = args.ftps_cert_file.clone().or_else(|| {
        Some(data_dir.join("tls").join(wharf_ftps::CERT_FILE_NAME)).filter(|p| p.exists())
    });
    let control = open_control_plane(
        &data_dir,
        &args.control,
        gateway_token,
        (args.public_sftp_port, 2121, 2990),
        host_keys,
        certificate,
    )
    .await?;
    let api = bind(args.control.api_addr, "API").await?;
    println!("Wharf control plane is running.");
    println!(
        "  API:        http://{}  (docs at /docs)",
        api.local_addr()?
    );
    println!("  Console:    http://{}/ui", api.local_addr()?);
    let (stop_tx, stop_rx) = watch::channel(false);
    let api_task = tokio::spawn(serve_api(
        api,
        wharf_console::with_console(control.router()),
        stop_rx,
    ));
    wait_for_signal().await;
    let _ = stop_tx.send(true);
    api_task.await??;
    control.shutdown().await;
    Ok(())
}

pub async fn ftps_gateway(args: FtpsGatewayArgs) -> Result<()> {
    let tls = load_tls(&args.data.data_dir, &args.ftps, &args.public_host)?;
    let login: Arc<dyn LoginProvider> = Arc::new(
        wharf_client::HttpLoginProvider::new(&args.control_plane_url, args.gateway_token.clone())
            .context("invalid --control-plane-url")?,
    );
    let ftps = bind_ftps(&args.ftps).await?;
    println!("Wharf FTPS gateway is running.");
    print_ftps(&ftps, &args.ftps)?;
    println!("  Control plane: {}", args.control_plane_url);
    let (stop_tx, stop_rx) = watch::channel(false);
    let stores = Arc::new(StoreCache::new());
    let events: Arc<dyn EventSink> = Arc::new(
        wharf_client::HttpEventSink::new(&args.control_plane_url, args.gateway_token.clone())
            .context("invalid --control-plane-url")?,
    );
    let task = tokio::spawn(serve_ftps(
        ftps,
        FtpsConfig {
            events: Some(events),
            admission: args.admission.limits(),
            session_watch: args.sessions.watch_options(),
            ..ftps_config(tls, &args.ftps)
        },
        login,
        stores,
        stop_rx,
    ));
    wait_for_signal().await;
    let _ = stop_tx.send(true);
    task.await??;
    Ok(())
}

pub async fn sftp_gateway(args: SftpGatewayArgs) -> Result<()> {
    let host_keys = load_host_keys(&args.data.data_dir, &args.sftp)?;
    let login: Arc<dyn LoginProvider> = Arc::new(
        wharf_client::HttpLoginProvider::new(&args.control_plane_url, args.gateway_token.clone())
            .context("invalid --control-plane-url")?,
    );
    let sftp = bind(args.sftp.sftp_addr, "SFTP").await?;
    println!("Wharf SFTP gateway is running.");
    println!("  SFTP:          {}", sftp.local_addr()?);
    println!("  Control plane: {}", args.control_plane_url);
    let (stop_tx, stop_rx) = watch::channel(false);
    let stores = Arc::new(StoreCache::new());
    let events: Arc<dyn EventSink> = Arc::new(
        wharf_client::HttpEventSink::new(&args.control_plane_url, args.gateway_token.clone())
            .context("invalid --control-plane-url")?,
    );
    let task = tokio::spawn(serve_sftp(
        sftp,
        SftpConfig {
            events: Some(events),
            admission: args.admission.limits(),
            session_watch: args.sessions.watch_options(),
            ..sftp_config(host_keys, &args.sftp)
        },
        login,
        stores,
        stop_rx,
    ));
    wait_for_signal().await;
    let _ = stop_tx.send(true);
    task.await??;
    Ok(())
}

fn prepare_data_dir(dir: &Path) -> Result<PathBuf> {
    if !dir.exists() {
        // The database holds password hashes and the directory holds keys: owner only.
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    }
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot resolve the data directory {}", dir.display()))?;
    Ok(dir)
}

/// A SQLite database holds password hashes, webhook secrets and bucket credentials: its file
/// is made (or made again) readable by the owner only, whatever the umask or the directory's
/// mode. SQLite gives its `-wal` and `-shm` files the database file's mode.
fn owner_only_sqlite_file(database_url: &str) -> Result<()> {
    let Some(rest) = database_url.strip_prefix("sqlite://") else {
        return Ok(());
    };
    let path = Path::new(rest.split('?').next().unwrap_or(rest));
    if path.as_os_str().is_empty() || rest.starts_with(":memory:") {
        return Ok(());
    }
    let made = match fs::metadata(path) {
        Ok(_) => fs::set_permissions(path, fs::Permissions::from_mode(0o600)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map(drop),
        Err(e) => Err(e),
    };
    made.with_context(|| format!("cannot make {} readable by its owner only", path.display()))
}

fn load_host_keys(data_dir: &Path, sftp: &SftpOptions) -> Result<HostKeys> {
    let dir = sftp
        .host_key_dir
        .clone()
        .unwrap_or_else(|| data_dir.join("host-keys"));
    let (keys, generated) = HostKeys::load_or_generate(&dir)?;
    for path in generated {
        println!("Generated SSH host key {}", path.display());
    }
    for (algorithm, fingerprint) in keys.fingerprints() {
        println!("  Host key:   {algorithm} {fingerprint}");
    }
    Ok(keys)
}

/// The FTPS certificate and key: the given files, or the pair in `<data-dir>/tls`, generated
/// on first start for the public host ([`TlsFiles::load_or_generate`]). Checked here, so an unusable certificate
/// stops the start-up with a clear message; its SHA-256 fingerprint is printed, for partners
/// to compare with what their client shows.
fn load_tls(data_dir: &Path, ftps: &FtpsOptions, public_host: &str) -> Result<TlsFiles> {
    let files = if let (Some(cert), Some(key)) = (&ftps.ftps_cert_file, &ftps.ftps_key_file) {
        let files = TlsFiles::new(cert, key);
        files
            .check()
            .context("unusable --ftps-cert-file/--ftps-key-file")?;
        files
    } else {
        let dir = data_dir.join("tls");
        let (files, generated) = TlsFiles::load_or_generate(&dir, public_host)
            .with_context(|| format!("cannot use the FTPS certificate in {}", dir.display()))?;
        if let Some(names) = generated {
            println!(
                "Generated a self-signed FTPS certificate {} (key {}, mode 0600) for {}",
                files.cert_file.display(),
                files.key_file.display(),
                names.join(", ")
            );
            println!("  Replace it with --ftps-cert-file/--ftps-key-file for partners to trust.");
        }
        files
    };
    let pem = fs::read(&files.cert_file)
        .with_context(|| format!("cannot read {}", files.cert_file.display()))?;
    if let Some(fingerprint) = wharf_control::certificate_sha256(&pem) {
        println!("  FTPS cert:  SHA-256 {fingerprint}");
    }
    Ok(files)
}

/// The explicit and implicit FTPS listeners.
async fn bind_ftps(ftps: &FtpsOptions) -> Result<FtpsListeners> {
    Ok(FtpsListeners {
        explicit: bind(ftps.ftps_addr, "FTPS").await?,
        implicit: Some(bind(ftps.ftps_implicit_addr, "implicit FTPS").await?),
    })
}

fn print_ftps(listeners: &FtpsListeners, ftps: &FtpsOptions) -> Result<()> {
    println!(
        "  FTPS:       {}  (explicit TLS, passive ports {}-{})",
        listeners.explicit.local_addr()?,
        ftps.ftps_passive_ports.start(),
        ftps.ftps_passive_ports.end()
    );
    if let Some(implicit) = &listeners.implicit {
        println!("  FTPS:       {}  (implicit TLS)", implicit.local_addr()?);
    }
    if ftps.ftps_proxy_protocol {
        println!(
            "  FTPS:       PROXY protocol header required on every connection, from {}",
            crate::cli::networks(&ftps.trusted_proxies)
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

fn ftps_config(tls: TlsFiles, options: &FtpsOptions) -> FtpsConfig {
    let mut config = FtpsConfig::new(tls);
    config.passive_ports = options.ftps_passive_ports.clone();
    config.passive_host = options.ftps_passive_host.clone().unwrap_or_default();
    config.idle_timeout = Duration::from_secs(options.ftps_idle_timeout.max(1));
    config.max_connections = options.ftps_max_connections.max(1);
    config.proxy_protocol = options.ftps_proxy_protocol;
    config.trusted_proxies = crate::cli::networks(&options.trusted_proxies);
    config.require_tls_resumption =
        options.ftps_tls_session_resumption == crate::cli::TlsResumption::Enforced;
    config
}

fn host_key_files(dir: &Path) -> Option<Vec<PathBuf>> {
    let files: Vec<PathBuf> = ["ssh_host_ed25519_key", "ssh_host_rsa_key"]
        .iter()
        .map(|f| dir.join(f))
        .filter(|p| p.exists())
        .collect();
    (!files.is_empty()).then_some(files)
}

fn fingerprints(keys: &HostKeys) -> Vec<HostKey> {
    keys.fingerprints()
        .into_iter()
        .map(|(algorithm, fingerprint)| HostKey {
            algorithm,
            fingerprint,
        })
        .collect()
}

/// The token gateways authenticate with: given, or generated once into the data directory.
fn gateway_token(data_dir: &Path, given: Option<String>) -> Result<String> {
    if let Some(token) = given {
        return Ok(token);
    }
    let path = data_dir.join("gateway-token");
    match fs::read_to_string(&path) {
        Ok(token) if !token.trim().is_empty() => return Ok(token.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let token = format!("wgt_{}", uuid::Uuid::new_v4().simple());
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    writeln!(file, "{token}")?;
    Ok(token)
}

async fn open_control_plane(
    data_dir: &Path,
    options: &ControlPlaneOptions,
    gateway_token: String,
    (sftp_port, ftps_port, ftps_implicit_port): (u16, u16, u16),
    host_keys: Vec<HostKey>,
    ftps_certificate_file: Option<PathBuf>,
) -> Result<ControlPlane> {
    let database_url = options
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("wharf.db").display()));
    owner_only_sqlite_file(&database_url)?;
    let bucket_url = match &options.bucket_url {
        Some(url) => url.clone(),
        None => {
            let dir = data_dir.join("buckets");
            fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            format!("file://{}", dir.display())
        }
    };
    let secrets_key_file = options
        .secrets_key_file
        .clone()
        .unwrap_or_else(|| data_dir.join("secrets.key"));
    let (secret_keys, created) = wharf_control::secrets::load_or_create(&secrets_key_file)?;
    if created {
        tracing::info!(path = %secrets_key_file.display(),
            "created the secrets key that seals webhook secrets and bucket credentials; keep a \
             copy apart from the database's backups");
    }
    let config = ControlPlaneConfig {
        database_url,
        data_dir: data_dir.to_owned(),
        default_bucket_url: bucket_url,
        public_host: options.public_host.clone(),
        sftp_port,
        ftps_port,
        ftps_implicit_port,
        gateway_token,
        host_keys,
        ftps_certificate_file,
        secret_keys: std::sync::Arc::new(secret_keys),
    };
    if options.webhook_deny_private_targets {
        tracing::warn!(
            "--webhook-deny-private-targets (WHARF_WEBHOOK_DENY_PRIVATE_TARGETS) is the default \
             now and has no effect; remove it (--webhook-allow-private-targets turns it off)"
        );
    }
    let control_options = wharf_control::ControlPlaneOptions {
        allow_private_webhook_targets: options.webhook_allow_private_targets,
        local_bucket_root: options.local_bucket_root.clone(),
        allow_host_credentials: options.allow_host_credentials,
        webhook_timeout: Duration::from_secs(options.webhook_timeout),
        retry: wharf_control::RetrySchedule {
            give_up_after: Duration::from_secs(options.webhook_retry_period),
            ..wharf_control::RetrySchedule::default()
        },
        defender: options.defender.options(),
        ..wharf_control::ControlPlaneOptions::default()
    };
    let control = ControlPlane::open_with(config, control_options)
        .await
        .context("cannot open the control plane's database")?;
    let env_key = std::env::var("WHARF_ADMIN_API_KEY").ok();
    match control.bootstrap_admin_key(env_key.as_deref()).await? {
        AdminKeySource::FromEnvironment => {
            println!("Admin API key: from WHARF_ADMIN_API_KEY");
        }
        AdminKeySource::Generated { path, .. } => {
            println!("Generated the admin API key into {}", path.display());
            println!(
                "  Use it with: export WHARF_API_KEY=$(cat {})",
                path.display()
            );
        }
        AdminKeySource::ExistingFile { path } => {
            println!("Admin API key: {}", path.display());
        }
        AdminKeySource::AlreadyProvisioned => {}
    }
    Ok(control)
}

fn sftp_config(host_keys: HostKeys, options: &SftpOptions) -> SftpConfig {
    let mut config = SftpConfig::new(host_keys);
    config.max_connections = options.sftp_max_connections.max(1);
    config.idle_timeout = Duration::from_secs(options.sftp_idle_timeout.max(1));
    config.login_timeout = Duration::from_secs(options.sftp_login_timeout.max(1));
    config
}

async fn bind(addr: std::net::SocketAddr, what: &str) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for {what} on {addr}"))
}

async fn serve_api(
    listener: TcpListener,
    router: axum::Router,
    stop: watch::Receiver<bool>,
) -> Result<()> {
    // Peer addresses reach the handlers (`clientIp` of objects-API events).
    crate::http::serve(listener, router, stop).await;
    Ok(())
}

async fn serve_sftp(
    listener: TcpListener,
    config: SftpConfig,
    login: Arc<dyn LoginProvider>,
    stores: Arc<StoreCache>,
    stop: watch::Receiver<bool>,
) -> Result<()> {
    wharf_sftp::serve(listener, config, login, stores, stop, DRAIN_TIMEOUT)
        .await
        .context("the SFTP gateway failed")
}

async fn serve_ftps(
    listeners: FtpsListeners,
    config: FtpsConfig,
    login: Arc<dyn LoginProvider>,
    stores: Arc<StoreCache>,
    stop: watch::Receiver<bool>,
) -> Result<()> {
    wharf_ftps::serve_listeners(listeners, config, login, stores, stop, DRAIN_TIMEOUT)
        .await
        .context("the FTPS gateway failed")
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; stop with Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
