//! Command-line interface: every flag also reads `WHARF_<FLAG>` from the environment.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use wharf_core::admission::{AdmissionLimits, Startups};
use wharf_ftps::PassiveHost;

#[derive(Parser)]
#[command(
    name = "wharf",
    version,
    about = "Wharf: self-hostable managed SFTP and FTPS for exchanging files with trading partners.",
    long_about = None,
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run everything in one process: control plane (API), SFTP gateway and FTPS gateway, on
    /// SQLite and a local-disk bucket by default.
    Serve(Box<ServeArgs>),
    /// Run the control plane (REST API, database) alone.
    ControlPlane(Box<ControlPlaneArgs>),
    /// Run an SFTP gateway alone; it asks the control plane who may log in.
    SftpGateway(SftpGatewayArgs),
    /// Run an FTPS gateway alone; it asks the control plane who may log in.
    FtpsGateway(FtpsGatewayArgs),
    /// Manage users (trading partners).
    #[command(subcommand)]
    Users(UsersCommand),
    /// Manage buckets: where home directories live.
    #[command(subcommand)]
    Buckets(BucketsCommand),
    /// Manage webhooks: signed deliveries of file events, with their delivery log.
    #[command(subcommand)]
    Webhooks(WebhooksCommand),
    /// Bans after failed logins: list them, lift one.
    #[command(subcommand)]
    Bans(BansCommand),
    /// List file events: uploads, failed uploads, deletes, renames, new directories.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Files in a bucket: list, download, upload and delete them (streamed, any size).
    #[command(subcommand)]
    Objects(ObjectsCommand),
}

#[derive(Args, Clone)]
pub struct LogArgs {
    /// Log format.
    #[arg(long, env = "WHARF_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(ValueEnum, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Args, Clone)]
pub struct DataDirArgs {
    /// Where Wharf keeps its state: database, local bucket, host keys, admin API key.
    #[arg(long, env = "WHARF_DATA_DIR", default_value = "./wharf-data")]
    pub data_dir: PathBuf,
}

#[derive(Args, Clone)]
pub struct ControlPlaneOptions {
    /// Database URL [default: sqlite://<data-dir>/wharf.db]; postgres://… for PostgreSQL.
    #[arg(long, env = "WHARF_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Storage of the default bucket [default: file://<data-dir>/buckets]; s3://, gs://, az://.
    #[arg(long, env = "WHARF_BUCKET_URL")]
    pub bucket_url: Option<String>,
    /// Address of the REST API and of the web console (`/ui`).
    #[arg(long, env = "WHARF_API_ADDR", default_value = "127.0.0.1:8080")]
    pub api_addr: SocketAddr,
    /// Host name partners connect to, shown in user details and connection hints.
    #[arg(long, env = "WHARF_PUBLIC_HOST", default_value = "localhost")]
    pub public_host: String,
    /// Seconds a failed webhook delivery keeps being retried (with exponential backoff from
    /// 5 s up to hourly) before it is marked dead; `POST …/retry` sends a dead one again.
    #[arg(long, env = "WHARF_WEBHOOK_RETRY_PERIOD", default_value_t = 24 * 60 * 60,
        value_parser = clap::value_parser!(u64).range(1..=30 * 24 * 60 * 60))]
    pub webhook_retry_period: u64,
    /// Seconds one webhook delivery attempt may take (connect, send, answer).
    #[arg(long, env = "WHARF_WEBHOOK_TIMEOUT", default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..=300))]
    pub webhook_timeout: u64,
    /// Let webhooks deliver to loopback, private, link-local and other internal addresses.
    /// Off by default: such targets are refused when a webhook is saved and on every delivery,
    /// so whoever creates webhooks cannot reach your internal network. Turn it on to deliver
    /// to services inside it.
    #[arg(long, env = "WHARF_WEBHOOK_ALLOW_PRIVATE_TARGETS")]
    pub webhook_allow_private_targets: bool,
    /// Accepted and ignored (internal targets are refused by default now); will be removed.
    #[arg(long, env = "WHARF_WEBHOOK_DENY_PRIVATE_TARGETS", hide = true)]
    pub webhook_deny_private_targets: bool,
    /// The directory that file:// buckets registered through the API must lie in (each in a
    /// directory of its own) [default: <data-dir>/buckets]. It may neither contain the data
    /// directory nor be inside it elsewhere than in buckets/. --bucket-url is not limited.
    #[arg(long, env = "WHARF_LOCAL_BUCKET_ROOT")]
    pub local_bucket_root: Option<PathBuf>,
    /// The key file that seals webhook secrets and bucket credentials in the database
    /// (AES-256-GCM): one base64 key of 32 bytes per line (`openssl rand -base64 32`), the
    /// first sealing, the others opening older values during a rotation. Created with a new
    /// key if missing [default: <data-dir>/secrets.key]. Every control plane on one database
    /// needs the same file; keep a copy outside the database's backups.
    #[arg(long, env = "WHARF_SECRETS_KEY_FILE")]
    pub secrets_key_file: Option<PathBuf>,
    /// Let buckets registered through the API use this host's own cloud credentials (its
    /// environment, instance or pod role, credential files). Off: each s3://, gs:// or az://
    /// bucket must bring its own in its options.
    #[arg(long, env = "WHARF_ALLOW_HOST_CREDENTIALS")]
    pub allow_host_credentials: bool,
    #[command(flatten)]
    pub defender: DefenderArgs,
}

/// The defender: bans after failed logins, held in the database so that every gateway
/// enforces them. Bans are listed and lifted with `wharf bans` or `/v1/bans`.
#[derive(Args, Clone)]
pub struct DefenderArgs {
    /// Client networks never counted nor banned: comma-separated addresses or CIDRs (your
    /// office, your monitoring). `none` counts loopback too.
    #[arg(long, env = "WHARF_DEFENDER_SAFE_LIST", value_delimiter = ',',
        default_value = "127.0.0.0/8,::1/128", value_parser = parse_network)]
    pub defender_safe_list: Vec<Network>,
    /// Points from one client address (an IPv6 /64) within the window that ban it from
    /// logging in: a failed password counts 1, or 2 for a user name that does not exist.
    /// 0 turns address bans off.
    #[arg(long, env = "WHARF_DEFENDER_ADDRESS_THRESHOLD", default_value_t = 15)]
    pub defender_address_threshold: u32,
    /// Failed passwords for one user name within the window, from any addresses, that ban
    /// password logins for it (public keys still work). 0 turns user bans off.
    #[arg(long, env = "WHARF_DEFENDER_USER_THRESHOLD", default_value_t = 30)]
    pub defender_user_threshold: u32,
    /// Seconds failed logins count for.
    #[arg(long, env = "WHARF_DEFENDER_WINDOW", default_value_t = 30 * 60,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub defender_window: u64,
    /// Seconds of a first ban; each ban in a row lasts twice as long as the one before.
    #[arg(long, env = "WHARF_DEFENDER_BAN_TIME", default_value_t = 15 * 60,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub defender_ban_time: u64,
    /// Seconds of the longest ban.
    #[arg(long, env = "WHARF_DEFENDER_MAX_BAN_TIME", default_value_t = 24 * 60 * 60,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub defender_max_ban_time: u64,
}

/// A network in a list where `none` (or nothing) stands for no network.
#[derive(Clone, Copy, Debug)]
pub struct Network(Option<ipnet::IpNet>);

/// `203.0.113.0/24`, `2001:db8::/48`, a single address, or `none`.
fn parse_network(text: &str) -> Result<Network, String> {
    let text = text.trim();
    if text.is_empty() || text.eq_ignore_ascii_case("none") {
        return Ok(Network(None));
    }
    if let Ok(ip) = text.parse::<std::net::IpAddr>() {
        return Ok(Network(Some(ipnet::IpNet::from(ip))));
    }
    text.parse::<ipnet::IpNet>()
        .map(|net| Network(Some(net.trunc())))
        .map_err(|_| format!("'{text}' is not an IP address or network (CIDR)"))
}

/// The networks of a list of [`Network`]s.
pub fn networks(list: &[Network]) -> Vec<ipnet::IpNet> {
    list.iter().filter_map(|n| n.0).collect()
}

impl DefenderArgs {
    pub fn options(&self) -> wharf_control::DefenderOptions {
        wharf_control::DefenderOptions {
            safe_list: networks(&self.defender_safe_list),
            address_threshold: self.defender_address_threshold,
            user_threshold: self.defender_user_threshold,
            window: std::time::Duration::from_secs(self.defender_window),
            ban_time: std::time::Duration::from_secs(self.defender_ban_time),
            max_ban_time: std::time::Duration::from_secs(
                self.defender_max_ban_time.max(self.defender_ban_time),
            ),
        }
    }
}

#[derive(Args, Clone)]
pub struct SftpOptions {
    /// Address of the SFTP gateway.
    #[arg(long, env = "WHARF_SFTP_ADDR", default_value = "0.0.0.0:2222")]
    pub sftp_addr: SocketAddr,
    /// Directory of the SSH host keys [default: <data-dir>/host-keys]; missing keys are
    /// generated there once. Gateways behind one load balancer must share it.
    #[arg(long, env = "WHARF_HOST_KEY_DIR")]
    pub host_key_dir: Option<PathBuf>,
    /// Most SFTP connections served at once.
    #[arg(long, env = "WHARF_SFTP_MAX_CONNECTIONS", default_value_t = 1024)]
    pub sftp_max_connections: usize,
    /// Seconds without traffic after which an SFTP connection is closed.
    #[arg(long, env = "WHARF_SFTP_IDLE_TIMEOUT", default_value_t = 600)]
    pub sftp_idle_timeout: u64,
    /// Seconds a new SFTP connection has to finish key exchange and log in.
    #[arg(long, env = "WHARF_SFTP_LOGIN_TIMEOUT", default_value_t = 20)]
    pub sftp_login_timeout: u64,
}

/// Which new connections the gateways take before they log in (each listener on its own).
#[derive(Args, Clone)]
pub struct AdmissionArgs {
    /// Connections from one client address that may be logging in at once, per gateway
    /// (an IPv6 address counts by its /64; loopback is not limited). Behind a load balancer,
    /// turn on the PROXY protocol so that this sees the clients' addresses.
    #[arg(long, env = "WHARF_MAX_CONNECTIONS_PER_IP", default_value_t = 10,
        value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_ip: u32,
    /// OpenSSH's MaxStartups for connections that are logging in, per gateway:
    /// start:rate:full refuses rate% of new connections past `start`, rising to all at `full`.
    #[arg(long, env = "WHARF_MAX_STARTUPS", default_value = "128:30:512")]
    pub max_startups: Startups,
}

impl AdmissionArgs {
    pub fn limits(&self) -> AdmissionLimits {
        AdmissionLimits {
            per_address: usize::try_from(self.max_connections_per_ip).unwrap_or(usize::MAX),
            startups: self.max_startups,
        }
    }
}

/// How long logged-in sessions may go on (each gateway on its own, asking the control plane).
#[derive(Args, Clone)]
pub struct SessionArgs {
    /// Seconds between re-checks of every open session with the control plane: a session
    /// whose user was disabled or deleted, or whose password or key changed, ends within this.
    #[arg(long, env = "WHARF_SESSION_RECHECK_INTERVAL", default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub session_recheck_interval: u64,
    /// Seconds a session may last, however busy; 0: no limit.
    #[arg(long, env = "WHARF_MAX_SESSION_DURATION", default_value_t = 24 * 60 * 60)]
    pub max_session_duration: u64,
}

impl SessionArgs {
    pub fn watch_options(&self) -> wharf_core::session_watch::WatchOptions {
        wharf_core::session_watch::WatchOptions {
            interval: std::time::Duration::from_secs(self.session_recheck_interval),
            max_duration: (self.max_session_duration > 0)
                .then(|| std::time::Duration::from_secs(self.max_session_duration)),
        }
    }
}

#[derive(Args, Clone)]
pub struct FtpsOptions {
    /// Address of the FTPS gateway (explicit TLS: clients send AUTH TLS; TLS is required for
    /// login and data).
    #[arg(long, env = "WHARF_FTPS_ADDR", default_value = "0.0.0.0:2121")]
    pub ftps_addr: SocketAddr,
    /// Address of the implicit FTPS port (TLS from the first byte, `ftps://` URLs); same
    /// users, files and passive ports as the explicit one.
    #[arg(long, env = "WHARF_FTPS_IMPLICIT_ADDR", default_value = "0.0.0.0:2990")]
    pub ftps_implicit_addr: SocketAddr,
    /// Ports for passive data connections (PASV, EPSV), as FIRST-LAST. Each connection
    /// holds one while a transfer is set up; open them in the firewall.
    #[arg(
        long,
        env = "WHARF_FTPS_PASSIVE_PORTS",
        default_value = "50000-50099",
        value_parser = wharf_ftps::parse_port_range
    )]
    pub ftps_passive_ports: RangeInclusive<u16>,
    /// Address PASV replies advertise: an IPv4 address or a DNS name (e.g. the load
    /// balancer's) [default: the address the client connected to].
    #[arg(long, env = "WHARF_FTPS_PASSIVE_HOST", value_parser = parse_passive_host)]
    pub ftps_passive_host: Option<PassiveHost>,
    /// TLS certificate chain, PEM, leaf first [default: <data-dir>/tls/ftps-cert.pem, a
    /// self-signed one generated on first start]. Read for every connection, so a renewed
    /// certificate needs no restart.
    #[arg(long, env = "WHARF_FTPS_CERT_FILE", requires = "ftps_key_file")]
    pub ftps_cert_file: Option<PathBuf>,
    /// TLS private key, PEM [default: <data-dir>/tls/ftps-key.pem].
    #[arg(long, env = "WHARF_FTPS_KEY_FILE", requires = "ftps_cert_file")]
    pub ftps_key_file: Option<PathBuf>,
    /// Most FTPS control connections served at once.
    #[arg(long, env = "WHARF_FTPS_MAX_CONNECTIONS", default_value_t = 1024)]
    pub ftps_max_connections: usize,
    /// Seconds without commands after which an FTPS connection is closed (a running transfer
    /// keeps it open).
    #[arg(long, env = "WHARF_FTPS_IDLE_TIMEOUT", default_value_t = 600)]
    pub ftps_idle_timeout: u64,
    /// Expect a PROXY protocol header (v1 or v2) from a load balancer on every FTPS control
    /// connection, so logs, logins and events see the real client address; connections
    /// without one are dropped. Data connections may carry one too.
    #[arg(long, env = "WHARF_FTPS_PROXY_PROTOCOL", requires = "trusted_proxies")]
    pub ftps_proxy_protocol: bool,
    /// The load balancers whose PROXY headers are believed: comma-separated addresses or
    /// CIDRs. With --ftps-proxy-protocol, connections from any other peer are dropped (a
    /// client must not name its own address).
    #[arg(long, env = "WHARF_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_network)]
    pub trusted_proxies: Vec<Network>,
    /// Whether a data connection must resume the control connection's TLS session (as
    /// vsftpd's require_ssl_reuse and AWS Transfer Family's default): `enforced` proves it
    /// comes from the client holding the control connection, so another program on the same
    /// address cannot take its data; `enabled` also accepts clients that cannot resume
    /// (Python's ftplib as is).
    #[arg(long, env = "WHARF_FTPS_TLS_SESSION_RESUMPTION", value_enum,
        default_value_t = TlsResumption::Enforced)]
    pub ftps_tls_session_resumption: TlsResumption,
}

/// `--ftps-tls-session-resumption`.
#[derive(ValueEnum, Clone, Copy, PartialEq, Eq)]
pub enum TlsResumption {
    /// Data connections must resume the control connection's TLS session.
    Enforced,
    /// Data connections may resume it, or not.
    Enabled,
}

fn parse_passive_host(s: &str) -> Result<PassiveHost, wharf_ftps::ConfigError> {
    s.parse()
}

#[derive(Args, Clone)]
pub struct ServeArgs {
    #[command(flatten)]
    pub data: DataDirArgs,
    #[command(flatten)]
    pub control: ControlPlaneOptions,
    #[command(flatten)]
    pub sftp: SftpOptions,
    #[command(flatten)]
    pub ftps: FtpsOptions,
    #[command(flatten)]
    pub admission: AdmissionArgs,
    #[command(flatten)]
    pub sessions: SessionArgs,
    /// Token gateways started separately use to reach this control plane
    /// [default: generated into <data-dir>/gateway-token].
    #[arg(long, env = "WHARF_GATEWAY_TOKEN", hide_env_values = true)]
    pub gateway_token: Option<String>,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Args, Clone)]
pub struct ControlPlaneArgs {
    #[command(flatten)]
    pub data: DataDirArgs,
    #[command(flatten)]
    pub control: ControlPlaneOptions,
    /// Token gateways must present [default: generated into <data-dir>/gateway-token].
    /// Every control-plane replica needs the same one.
    #[arg(long, env = "WHARF_GATEWAY_TOKEN", hide_env_values = true)]
    pub gateway_token: Option<String>,
    /// SFTP port partners connect to (shown in connection hints).
    #[arg(long, env = "WHARF_PUBLIC_SFTP_PORT", default_value_t = 2222)]
    pub public_sftp_port: u16,
    /// Host key directory whose fingerprints the API shows [default: <data-dir>/host-keys].
    #[arg(long, env = "WHARF_HOST_KEY_DIR")]
    pub host_key_dir: Option<PathBuf>,
    /// The FTPS gateways' certificate (PEM), whose SHA-256 fingerprint the API shows
    /// [default: <data-dir>/tls/ftps-cert.pem when it exists].
    #[arg(long, env = "WHARF_FTPS_CERT_FILE")]
    pub ftps_cert_file: Option<PathBuf>,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Args, Clone)]
pub struct SftpGatewayArgs {
    #[command(flatten)]
    pub data: DataDirArgs,
    #[command(flatten)]
    pub sftp: SftpOptions,
    #[command(flatten)]
    pub admission: AdmissionArgs,
    #[command(flatten)]
    pub sessions: SessionArgs,
    /// URL of the control plane, e.g. http://10.0.0.5:8080.
    #[arg(
        long,
        env = "WHARF_CONTROL_PLANE_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub control_plane_url: String,
    /// The control plane's gateway token.
    #[arg(long, env = "WHARF_GATEWAY_TOKEN", hide_env_values = true)]
    pub gateway_token: String,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Args, Clone)]
pub struct FtpsGatewayArgs {
    #[command(flatten)]
    pub data: DataDirArgs,
    #[command(flatten)]
    pub ftps: FtpsOptions,
    #[command(flatten)]
    pub admission: AdmissionArgs,
    #[command(flatten)]
    pub sessions: SessionArgs,
    /// Host name partners connect to: a certificate generated on first start names it.
    #[arg(long, env = "WHARF_PUBLIC_HOST", default_value = "localhost")]
    pub public_host: String,
    /// URL of the control plane, e.g. http://10.0.0.5:8080.
    #[arg(
        long,
        env = "WHARF_CONTROL_PLANE_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub control_plane_url: String,
    /// The control plane's gateway token.
    #[arg(long, env = "WHARF_GATEWAY_TOKEN", hide_env_values = true)]
    pub gateway_token: String,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Args, Clone)]
pub struct ApiArgs {
    /// URL of the Wharf API.
    #[arg(
        long,
        env = "WHARF_API_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub api_url: String,
    /// API key [default: the contents of <data-dir>/admin-api-key].
    #[arg(long, env = "WHARF_API_KEY", hide_env_values = true, global = true)]
    pub api_key: Option<String>,
    /// Data directory to find the admin API key in when no key is given.
    #[arg(
        long,
        env = "WHARF_DATA_DIR",
        default_value = "./wharf-data",
        global = true
    )]
    pub data_dir: PathBuf,
    /// Print the API's JSON response instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(ValueEnum, Clone, Copy)]
pub enum PermissionsArg {
    ReadWrite,
    ReadOnly,
    WriteOnly,
}

impl From<PermissionsArg> for wharf_core::Permissions {
    fn from(p: PermissionsArg) -> Self {
        match p {
            PermissionsArg::ReadWrite => wharf_core::Permissions::ReadWrite,
            PermissionsArg::ReadOnly => wharf_core::Permissions::ReadOnly,
            PermissionsArg::WriteOnly => wharf_core::Permissions::WriteOnly,
        }
    }
}

/// Where a password chosen by the operator comes from (never a command-line argument, which
/// other users of the machine could read in the process list).
#[derive(Args, Clone)]
pub struct ChosenPassword {
    /// Set the password read from standard input (one line; the line break is dropped)
    /// instead of a generated one: 16-128 characters, no control characters, no whitespace at
    /// either end.
    #[arg(long, conflicts_with_all = ["password_file", "password_length"])]
    pub password_stdin: bool,
    /// Set the password read from this file (its first line) instead of a generated one;
    /// same rules as --password-stdin. A leading ~/ is your home directory.
    #[arg(long, value_name = "PATH", conflicts_with = "password_length")]
    pub password_file: Option<PathBuf>,
    /// Length of the generated password (16-128).
    #[arg(long)]
    pub password_length: Option<u32>,
}

#[derive(Subcommand)]
pub enum UsersCommand {
    /// Create a user; prints its username and password (shown only once).
    Create {
        #[command(flatten)]
        api: ApiArgs,
        /// What the user is for, e.g. "Trading partner Alice".
        #[arg(long)]
        description: String,
        /// Home directory inside the bucket, e.g. /alice; / for a root user.
        #[arg(long = "home")]
        home: String,
        /// Username [default: generated, 8 upper-case letters and digits].
        #[arg(long)]
        username: Option<String>,
        /// Bucket [default: the default bucket].
        #[arg(long)]
        bucket: Option<String>,
        #[arg(long, value_enum)]
        permissions: Option<PermissionsArg>,
        /// An OpenSSH public key line the user may log in with (repeatable), or @file with
        /// one key per line (@~/.ssh/id_ed25519.pub works).
        #[arg(long = "public-key")]
        public_keys: Vec<String>,
        #[command(flatten)]
        password: ChosenPassword,
        /// false: the user logs in with public keys only (SFTP); a password is set anyway,
        /// for when password login is turned on [default: true].
        #[arg(long, value_name = "true|false", value_parser = clap::value_parser!(bool))]
        password_enabled: Option<bool>,
        /// Most concurrent sessions of this user (1-1000) [default: 10]; counted per gateway.
        #[arg(long)]
        max_sessions: Option<u32>,
    },
    /// List users.
    List {
        #[command(flatten)]
        api: ApiArgs,
        /// Users per page; without --page-token every page is fetched.
        #[arg(long)]
        page_size: Option<u32>,
        /// Fetch only the page this token names (from a previous --json listing).
        #[arg(long)]
        page_token: Option<String>,
    },
    /// Show one user.
    Get {
        #[command(flatten)]
        api: ApiArgs,
        username: String,
    },
    /// Change a user.
    Update {
        #[command(flatten)]
        api: ApiArgs,
        username: String,
        #[arg(long)]
        description: Option<String>,
        #[arg(long = "home")]
        home: Option<String>,
        #[arg(long, value_enum)]
        permissions: Option<PermissionsArg>,
        /// Replace the user's public keys with these (repeatable), or @file with one key per
        /// line (@~/.ssh/id_ed25519.pub works).
        #[arg(long = "public-key")]
        public_keys: Vec<String>,
        /// Remove all public keys.
        #[arg(long, conflicts_with = "public_keys")]
        clear_public_keys: bool,
        /// Stop the user from logging in.
        #[arg(long, conflicts_with = "enable")]
        disable: bool,
        /// Allow a disabled user to log in again.
        #[arg(long)]
        enable: bool,
        /// false: the password stops logging in (public keys only; it is kept); true: it
        /// logs in again.
        #[arg(long, value_name = "true|false", value_parser = clap::value_parser!(bool))]
        password_enabled: Option<bool>,
        /// Most concurrent sessions of this user (1-1000); counted per gateway.
        #[arg(long)]
        max_sessions: Option<u32>,
    },
    /// Delete a user (its files stay in the bucket).
    Delete {
        #[command(flatten)]
        api: ApiArgs,
        username: String,
    },
    /// Set a new password for a user, generated unless one is given; the old one stops
    /// working at once. Password login stays on or off as it was.
    ResetPassword {
        #[command(flatten)]
        api: ApiArgs,
        username: String,
        #[command(flatten)]
        password: ChosenPassword,
    },
}

#[derive(Subcommand)]
pub enum BansCommand {
    /// List the bans in force: client addresses (every login refused) and user names
    /// (password logins refused).
    List {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Lift a ban now: logins are accepted again and past failures forgotten.
    Lift {
        #[command(flatten)]
        api: ApiArgs,
        /// A banned client address (for an IPv6 /64 ban, any address in it).
        #[arg(long, conflicts_with = "user", required_unless_present = "user")]
        address: Option<std::net::IpAddr>,
        /// A banned user name.
        #[arg(long)]
        user: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum BucketsCommand {
    /// List buckets.
    List {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Show one bucket.
    Get {
        #[command(flatten)]
        api: ApiArgs,
        bucket_name: String,
    },
    /// Register a bucket that exists in its object store (it is listed once first).
    Create {
        #[command(flatten)]
        api: ApiArgs,
        /// The bucket's name in Wharf: 3-63 of a-z, 0-9 and '-'.
        bucket_name: String,
        /// Where its objects live: file:///dir (a directory of its own under the server's
        /// --local-bucket-root), s3://bucket[/prefix], gs://bucket, az://container.
        #[arg(long)]
        url: String,
        /// A storage option as key=value (repeatable), e.g. aws_endpoint=https://…,
        /// aws_access_key_id=…, azure_storage_account_name=…. Values are never shown again.
        #[arg(long = "option", value_name = "KEY=VALUE")]
        options: Vec<String>,
    },
    /// Delete a bucket from Wharf; its objects stay in the store.
    Delete {
        #[command(flatten)]
        api: ApiArgs,
        bucket_name: String,
    },
}

/// An event type by its wire name (`file.created`, …).
fn parse_event_type(s: &str) -> Result<wharf_core::EventType, String> {
    wharf_core::EventType::parse(s).ok_or_else(|| {
        format!(
            "unknown event type; one of {}",
            wharf_core::EventType::ALL.map(|t| t.as_str()).join(", ")
        )
    })
}

#[derive(Subcommand)]
pub enum WebhooksCommand {
    /// Subscribe a URL to events; prints the webhook's id and signing secret (shown only once).
    Create {
        #[command(flatten)]
        api: ApiArgs,
        /// Where deliveries are POSTed: an http:// or https:// URL.
        #[arg(long)]
        url: String,
        /// An event type to deliver (repeatable): file.created, file.upload_failed,
        /// file.deleted, file.renamed, directory.created.
        #[arg(long = "event", value_name = "TYPE", required = true, value_parser = parse_event_type)]
        events: Vec<wharf_core::EventType>,
        /// Only events in this bucket.
        #[arg(long)]
        bucket: Option<String>,
        /// Only events whose bucket key starts with this, e.g. alice/in/ (no leading /).
        #[arg(long)]
        prefix: Option<String>,
        /// Only events caused by this user.
        #[arg(long)]
        username: Option<String>,
        /// What the webhook is for.
        #[arg(long)]
        description: Option<String>,
    },
    /// List webhooks.
    List {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Show one webhook (its secret is never shown again).
    Get {
        #[command(flatten)]
        api: ApiArgs,
        /// The webhook's id (wh_…).
        id: String,
    },
    /// Change a webhook. Filter options change only that part of the filter; an empty value
    /// (--prefix '') removes it.
    Update {
        #[command(flatten)]
        api: ApiArgs,
        /// The webhook's id (wh_…).
        id: String,
        #[arg(long)]
        url: Option<String>,
        /// Replace the event types with these (repeatable).
        #[arg(long = "event", value_name = "TYPE", value_parser = parse_event_type)]
        events: Vec<wharf_core::EventType>,
        #[arg(long)]
        bucket: Option<String>,
        #[arg(long)]
        prefix: Option<String>,
        #[arg(long)]
        username: Option<String>,
        /// Remove the whole filter: every matching event type is delivered.
        #[arg(long, conflicts_with_all = ["bucket", "prefix", "username"])]
        clear_filter: bool,
        #[arg(long)]
        description: Option<String>,
        /// Resume deliveries (also resumes a webhook paused by the loop guard).
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        /// Stop new deliveries (pending ones wait).
        #[arg(long)]
        disable: bool,
    },
    /// Delete a webhook with its pending deliveries and delivery log (the events stay).
    Delete {
        #[command(flatten)]
        api: ApiArgs,
        /// The webhook's id (wh_…).
        id: String,
    },
    /// Queue a signed test delivery (type webhook.test) to this webhook only.
    Test {
        #[command(flatten)]
        api: ApiArgs,
        /// The webhook's id (wh_…).
        id: String,
    },
    /// Show a webhook's deliveries, newest first, with every attempt.
    Deliveries {
        #[command(flatten)]
        api: ApiArgs,
        /// The webhook's id (wh_…).
        id: String,
        /// Most deliveries shown.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
        /// Continue from this nextPageToken (from a previous --json listing).
        #[arg(long)]
        page_token: Option<String>,
    },
    /// Send a dead delivery again.
    Retry {
        #[command(flatten)]
        api: ApiArgs,
        /// The webhook's id (wh_…).
        id: String,
        /// The delivery's id (dlv_…).
        delivery_id: String,
    },
}

#[derive(Subcommand)]
pub enum EventsCommand {
    /// List events, newest first.
    List {
        #[command(flatten)]
        api: ApiArgs,
        /// Only events of this type: file.created, file.upload_failed, file.deleted,
        /// file.renamed, directory.created.
        #[arg(long = "type", value_name = "TYPE", value_parser = parse_event_type)]
        event_type: Option<wharf_core::EventType>,
        /// Only events caused by this user.
        #[arg(long)]
        username: Option<String>,
        /// Only events whose bucket key starts with this, e.g. alice/in/ (no leading /).
        #[arg(long)]
        prefix: Option<String>,
        /// Only events in this bucket.
        #[arg(long)]
        bucket: Option<String>,
        /// Most events shown.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
        /// Continue from this nextPageToken (from a previous --json listing).
        #[arg(long)]
        page_token: Option<String>,
    },
    /// Show one event.
    Get {
        #[command(flatten)]
        api: ApiArgs,
        /// The event's id (evt_…).
        id: String,
    },
}

#[derive(Subcommand)]
pub enum ObjectsCommand {
    /// List the files and directories in one directory of a bucket (not below it).
    List {
        #[command(flatten)]
        api: ApiArgs,
        /// The bucket, e.g. default.
        bucket: String,
        /// The directory, as a key: alice/in (no leading /) [default: the bucket's root].
        #[arg(long, default_value = "")]
        prefix: String,
        /// Most entries shown.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
        /// Continue from this nextPageToken (from a previous --json listing).
        #[arg(long)]
        page_token: Option<String>,
    },
    /// Download a file, streamed to disk.
    Get {
        #[command(flatten)]
        api: ApiArgs,
        /// The bucket, e.g. default.
        bucket: String,
        /// The file's key, e.g. alice/in/invoice.edi (no leading /).
        key: String,
        /// Where to write it; - for standard output [default: the key's file name in the
        /// current directory]. Written to FILE.part first, renamed once complete.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Upload a file, streamed from disk; missing parent directories are created. The
    /// object appears only once complete (a failed upload leaves the previous version).
    Put {
        #[command(flatten)]
        api: ApiArgs,
        /// The bucket, e.g. default.
        bucket: String,
        /// The key to write, e.g. alice/in/invoice.edi (no leading /).
        key: String,
        /// The local file to upload.
        file: PathBuf,
    },
    /// Create a directory (and its parents).
    Mkdir {
        #[command(flatten)]
        api: ApiArgs,
        /// The bucket, e.g. default.
        bucket: String,
        /// The directory's key, e.g. alice/out.
        key: String,
    },
    /// Delete a file, or an empty directory.
    Delete {
        #[command(flatten)]
        api: ApiArgs,
        /// The bucket, e.g. default.
        bucket: String,
        /// The key of the file or directory.
        key: String,
        /// Delete a directory with everything in it (at most 10,000 entries).
        #[arg(long)]
        recursive: bool,
    },
}
