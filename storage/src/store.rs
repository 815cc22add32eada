//! Where data lives: a plain path or a store URL (`s3://`, `gs://`, `az://`, `abfss://`,
//! `memory://`, `file://`) turned into an object store, built from the URL, the standard
//! environment variables and a source's own options. Every process (the client, the
//! scheduler, each executor, the Flight SQL server and deltalake) gets its stores here,
//! so one URL reaches the same data everywhere.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, LazyLock, Mutex, Once};
use std::time::Duration;

use datafusion::error::DataFusionError;
use datafusion::execution::object_store::ObjectStoreRegistry;
use datafusion::execution::runtime_env::RuntimeEnv;
use deltalake_core::logstore::{
    LogStore, LogStoreFactory, ObjectStoreFactory, ObjectStoreRef, StorageConfig, default_logstore,
    logstore_factories, object_store_factories,
};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::buffered::BufWriter;
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, RetryConfig};
use tokio::io::AsyncWriteExt;
use url::Url;

use crate::error::{Result, StorageError};

/// The kinds of store Strata reaches, by URL scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Local,
    Memory,
    S3,
    Gcs,
    Azure,
}

impl StoreKind {
    /// The kind of store a URL scheme names, if Strata knows it.
    pub fn of_scheme(scheme: &str) -> Option<Self> {
        match scheme {
            "file" => Some(Self::Local),
            "memory" => Some(Self::Memory),
            "s3" | "s3a" => Some(Self::S3),
            "gs" => Some(Self::Gcs),
            "az" | "adl" | "azure" | "abfs" | "abfss" => Some(Self::Azure),
            _ => None,
        }
    }

    /// The prefix of a source's `OPTIONS` keys for this store (`'aws.region'`).
    fn option_prefix(self) -> Option<&'static str> {
        match self {
            Self::S3 => Some("aws."),
            Self::Gcs => Some("gcp."),
            Self::Azure => Some("azure."),
            Self::Local | Self::Memory => None,
        }
    }
}

/// The URL schemes of the stores that are not a local disk, for deltalake's registries.
const REMOTE_SCHEMES: [&str; 9] = [
    "memory", "s3", "s3a", "gs", "az", "adl", "azure", "abfs", "abfss",
];

/// Whether a source option configures its store (`'aws.access_key_id'`) rather than its format.
pub fn is_store_option(key: &str) -> bool {
    ["aws.", "gcp.", "azure."]
        .iter()
        .any(|prefix| key.starts_with(prefix))
}

/// A store's own settings from a source's `OPTIONS`, keyed as the `object_store`
/// builders name them; shown with their values hidden.
#[derive(Clone, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct StoreOptions(BTreeMap<String, String>);

impl StoreOptions {
    /// The store options among a source's options (`'aws.region' 'eu-west-1'`), keys
    /// lowercased as SQL option names are.
    pub fn from_source_options(options: impl IntoIterator<Item = (String, String)>) -> Self {
        Self(
            options
                .into_iter()
                .map(|(key, value)| (key.to_ascii_lowercase(), value))
                .filter(|(key, _)| is_store_option(key))
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The options for one kind of store, without their prefix.
    fn for_kind(&self, kind: StoreKind) -> impl Iterator<Item = (&str, &str)> {
        let prefix = kind.option_prefix().unwrap_or("\0");
        self.0.iter().filter_map(move |(key, value)| {
            key.strip_prefix(prefix).map(|name| (name, value.as_str()))
        })
    }
}

impl fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|key| (key, "***")))
            .finish()
    }
}

/// A location in a store: the store's root URL and the path inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreUrl {
    /// `scheme://authority/`, what DataFusion registers a store under.
    root: Url,
    /// The path inside the store, without leading or trailing slash.
    path: StorePath,
    kind: StoreKind,
}

impl StoreUrl {
    /// Parses a URL, or a plain path (relative to the working directory) as a local one.
    pub fn parse(text: &str) -> Result<Self> {
        let invalid = |reason: String| StorageError::InvalidLocation {
            location: text.to_owned(),
            reason,
        };
        let url = if text.contains("://") {
            Url::parse(text).map_err(|error| invalid(error.to_string()))?
        } else {
            let path = std::path::absolute(text).map_err(|error| invalid(error.to_string()))?;
            Url::from_file_path(lexically_normal(&path))
                .map_err(|()| invalid("not an absolute path".into()))?
        };
        let kind = StoreKind::of_scheme(url.scheme()).ok_or_else(|| {
            invalid(format!(
                "Strata reads {} URLs, not {}://",
                "s3://, gs://, az://, abfss://, memory:// and file://",
                url.scheme()
            ))
        })?;
        if kind != StoreKind::Local && url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("the URL names no bucket or container".into()));
        }
        let root = Url::parse(&format!(
            "{}://{}/",
            url.scheme(),
            &url[url::Position::BeforeUsername..url::Position::AfterPort]
        ))
        .map_err(|error| invalid(error.to_string()))?;
        let path =
            StorePath::from_url_path(url.path()).map_err(|error| invalid(error.to_string()))?;
        Ok(Self { root, path, kind })
    }

    /// The store's root URL, `scheme://authority/`.
    pub fn root(&self) -> &Url {
        &self.root
    }

    /// The path inside the store.
    pub fn path(&self) -> &StorePath {
        &self.path
    }

    pub fn kind(&self) -> StoreKind {
        self.kind
    }

    /// A path inside the store as a URL.
    pub fn url_of(&self, path: &StorePath) -> String {
        match self.kind {
            // Local paths are shown as paths, as users wrote them.
            StoreKind::Local => format!("/{path}"),
            _ => format!("{}{path}", self.root),
        }
    }

    /// This location as a URL (or a path, for the local disk).
    pub fn display(&self) -> String {
        self.url_of(&self.path)
    }

    /// The same store, at a path below this location.
    pub fn child(&self, relative: &str) -> Self {
        let mut path = self.path.clone();
        for part in relative.split('/').filter(|part| !part.is_empty()) {
            path = path.join(part);
        }
        Self {
            path,
            ..self.clone()
        }
    }

    /// The location as a full URL, with a trailing slash when it is a directory.
    pub fn to_url(&self, directory: bool) -> Url {
        let mut text = format!("{}{}", self.root, self.path);
        if directory && !text.ends_with('/') {
            text.push('/');
        }
        Url::parse(&text).unwrap_or_else(|_| self.root.clone())
    }

    /// Opens the store, configured from the environment and `options`.
    pub fn open(&self, options: &StoreOptions) -> Result<Arc<dyn ObjectStore>> {
        open_store(&self.root, self.kind, options)
    }
}

/// An absolute path without `.` and `..` (a store path has neither), symlinks untouched.
fn lexically_normal(path: &std::path::Path) -> std::path::PathBuf {
    use std::path::Component;
    let mut normal = std::path::PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                normal.pop();
            }
            other => normal.push(other),
        }
    }
    normal
}

/// Stores this process has opened, by root URL and options.
type Opened = HashMap<(String, StoreOptions), Arc<dyn ObjectStore>>;

/// One client (and one connection pool) per bucket, and one in-memory store per
/// `memory://` name, for the whole process.
static OPENED: LazyLock<Mutex<Opened>> = LazyLock::new(Mutex::default);

fn open_store(root: &Url, kind: StoreKind, options: &StoreOptions) -> Result<Arc<dyn ObjectStore>> {
    let key = (root.to_string(), options.clone());
    let mut opened = OPENED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(store) = opened.get(&key) {
        return Ok(Arc::clone(store));
    }
    let store = build_store(root, kind, options)?;
    opened.insert(key, Arc::clone(&store));
    Ok(store)
}

/// How often a request is retried: enough for a store's throttling, short enough that
/// an endpoint that does not answer is an error within seconds, not minutes.
fn retries() -> RetryConfig {
    RetryConfig {
        max_retries: 5,
        retry_timeout: Duration::from_secs(60),
        ..RetryConfig::default()
    }
}

/// A source's options for one kind of store, as its builder's configuration keys.
fn config_keys<K: FromStr>(
    options: &StoreOptions,
    kind: StoreKind,
    root: &Url,
) -> Result<Vec<(K, String)>> {
    options
        .for_kind(kind)
        .map(|(key, value)| {
            let parsed = K::from_str(key).map_err(|_| StorageError::InvalidLocation {
                location: root.to_string(),
                reason: format!("unknown store option '{key}'"),
            })?;
            Ok((parsed, value.to_owned()))
        })
        .collect()
}

fn build_store(
    root: &Url,
    kind: StoreKind,
    options: &StoreOptions,
) -> Result<Arc<dyn ObjectStore>> {
    let error = |source: object_store::Error| StorageError::Store {
        location: root.to_string(),
        reason: describe(&source),
    };
    Ok(match kind {
        StoreKind::Local => Arc::new(LocalFileSystem::new()),
        StoreKind::Memory => Arc::new(InMemory::new()),
        StoreKind::S3 => {
            let builder = config_keys(options, kind, root)?.into_iter().fold(
                AmazonS3Builder::from_env().with_url(root.as_str()),
                |builder, (key, value)| builder.with_config(key, value),
            );
            // An endpoint given as http:// is a deliberate choice (a local S3 server).
            let plain_http = builder
                .get_config_value(&AmazonS3ConfigKey::Endpoint)
                .is_some_and(|endpoint| endpoint.starts_with("http://"));
            let builder = builder.with_retry(retries());
            let builder = if plain_http {
                builder.with_allow_http(true)
            } else {
                builder
            };
            Arc::new(builder.build().map_err(error)?)
        }
        StoreKind::Gcs => {
            let builder = config_keys(options, kind, root)?.into_iter().fold(
                GoogleCloudStorageBuilder::from_env().with_url(root.as_str()),
                |builder, (key, value): (GoogleConfigKey, _)| builder.with_config(key, value),
            );
            Arc::new(builder.with_retry(retries()).build().map_err(error)?)
        }
        StoreKind::Azure => {
            let builder = config_keys(options, kind, root)?.into_iter().fold(
                MicrosoftAzureBuilder::from_env().with_url(root.as_str()),
                |builder, (key, value): (AzureConfigKey, _)| builder.with_config(key, value),
            );
            Arc::new(builder.with_retry(retries()).build().map_err(error)?)
        }
    })
}

/// Copies a local directory's files into a store under `to`, each uploaded in parts as it
/// is read; returns how many files were copied.
pub async fn upload_dir(from: &std::path::Path, to: &StoreUrl) -> Result<usize> {
    let store = to.open(&StoreOptions::default())?;
    let mut pending = vec![from.to_path_buf()];
    let mut copied = 0;
    while let Some(dir) = pending.pop() {
        let local_error = |error: std::io::Error| StorageError::Store {
            location: dir.display().to_string(),
            reason: error.to_string(),
        };
        for entry in std::fs::read_dir(&dir).map_err(local_error)? {
            let path = entry.map_err(local_error)?.path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let relative = path
                .strip_prefix(from)
                .unwrap_or(&path)
                .display()
                .to_string();
            let target = to.child(&relative);
            let failed =
                |error: object_store::Error| StorageError::store(&target.display(), &error);
            let mut file = tokio::fs::File::open(&path).await.map_err(local_error)?;
            let mut upload = BufWriter::new(Arc::clone(&store), target.path().clone());
            tokio::io::copy(&mut file, &mut upload)
                .await
                .map_err(local_error)?;
            upload.shutdown().await.map_err(|error| {
                failed(object_store::Error::Generic {
                    store: "upload",
                    source: Box::new(error),
                })
            })?;
            copied += 1;
        }
    }
    Ok(copied)
}

/// What went wrong with a store, in words that name no credential.
///
/// A store's own error text can quote a request (signed headers, an access key id),
/// so only its kind and the path are shown, with the service's reason for a generic failure.
pub fn describe(error: &object_store::Error) -> String {
    use object_store::Error as E;
    match error {
        E::NotFound { path, .. } => format!("{path} does not exist"),
        E::PermissionDenied { path, .. } => {
            format!("access to {path} was denied; check the credentials")
        }
        E::Unauthenticated { path, .. } => {
            format!("the store did not accept the credentials (reading {path})")
        }
        E::AlreadyExists { path, .. } => format!("{path} already exists"),
        E::Precondition { path, .. } => format!("{path} changed while it was written"),
        E::NotSupported { .. } | E::NotImplemented { .. } => {
            format!("the store does not support this: {error}")
        }
        E::Generic { store, source } => format!("{store}: {}", scrub(&source.to_string())),
        other => scrub(&other.to_string()),
    }
}

/// A store's message without what could carry a secret: query strings (a SAS token's
/// signature), and lines or words of a signed request (an access key id, a signature).
fn scrub(text: &str) -> String {
    const MARKERS: [&str; 7] = [
        "signature",
        "credential",
        "accesskey",
        "authorization",
        "x-amz-",
        "stringtosign",
        "token",
    ];
    let secret = |word: &str| {
        let lower = word.to_ascii_lowercase();
        MARKERS.iter().any(|marker| lower.contains(marker))
    };
    let mut kept: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        if secret(word) {
            if kept.last().is_none_or(|last| last != "(details hidden)") {
                kept.push("(details hidden)".to_owned());
            }
            continue;
        }
        kept.push(match word.split_once('?') {
            Some((before, _)) if before.contains("://") => format!("{before}?…"),
            _ => word.to_owned(),
        });
    }
    let text = kept.join(" ");
    // object_store keeps a failed request's status code to itself for some requests
    // (a listing's, say), so the hint is taken from its message.
    if text.contains(" 401 Unauthorized") || text.contains(" 403 Forbidden") {
        format!("{text}; check the store's credentials")
    } else {
        text
    }
}

/// DataFusion's registry of stores, opening any URL Strata knows on first use, so a
/// plan that names `s3://…` runs in any process without registering the store first.
#[derive(Debug, Default)]
pub struct StoreRegistry {
    registered: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl StoreRegistry {
    /// A registry for a session's runtime; deltalake is given the same stores.
    pub fn shared() -> Arc<dyn ObjectStoreRegistry> {
        register_with_deltalake();
        Arc::new(Self::default())
    }

    /// A runtime whose stores are Strata's, for a session that reads or writes tables.
    pub fn runtime() -> Arc<RuntimeEnv> {
        Arc::new(RuntimeEnv {
            object_store_registry: Self::shared(),
            ..RuntimeEnv::default()
        })
    }
}

/// A store's key: scheme, host and port, and the user part that `abfss://` URLs use for
/// the container (DataFusion's own registry drops it, mixing up containers).
fn registry_key(url: &Url) -> String {
    let user = match url.username() {
        "" => String::new(),
        name => format!("{name}@"),
    };
    format!(
        "{}://{user}{}",
        url.scheme(),
        &url[url::Position::BeforeHost..url::Position::AfterPort]
    )
}

impl ObjectStoreRegistry for StoreRegistry {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.registered
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(registry_key(url), store)
    }

    fn deregister_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        self.registered
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&registry_key(url))
            .ok_or_else(|| DataFusionError::Plan(format!("no store is registered for {url}")))
    }

    fn get_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        if let Some(store) = self
            .registered
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&registry_key(url))
        {
            return Ok(Arc::clone(store));
        }
        let kind = StoreKind::of_scheme(url.scheme()).ok_or_else(|| {
            DataFusionError::Plan(format!("Strata has no store for {}:// URLs", url.scheme()))
        })?;
        let root = Url::parse(&format!("{}/", registry_key(url)))
            .map_err(|error| DataFusionError::Plan(format!("{url}: {error}")))?;
        open_store(&root, kind, &StoreOptions::default()).map_err(DataFusionError::from)
    }
}

/// Lets deltalake open tables on every store Strata knows, through the same stores, and
/// commit with create-only puts (S3 conditional writes, Azure and GCS preconditions):
/// the default log store needs neither a lock service nor a rename.
pub fn register_with_deltalake() {
    static REGISTERED: Once = Once::new();
    REGISTERED.call_once(|| {
        let stores = object_store_factories();
        let logs = logstore_factories();
        for scheme in REMOTE_SCHEMES {
            let Ok(url) = Url::parse(&format!("{scheme}://")) else {
                continue;
            };
            stores.insert(url.clone(), Arc::new(DeltaStores));
            logs.insert(url, Arc::new(DeltaStores));
        }
    });
}

/// deltalake's view of Strata's stores.
struct DeltaStores;

impl ObjectStoreFactory for DeltaStores {
    fn parse_url_opts(
        &self,
        url: &Url,
        _config: &StorageConfig,
    ) -> deltalake_core::DeltaResult<(ObjectStoreRef, StorePath)> {
        let location = StoreUrl::parse(url.as_str())
            .map_err(|error| deltalake_core::DeltaTableError::Generic(error.to_string()))?;
        let store = location
            .open(&StoreOptions::default())
            .map_err(|error| deltalake_core::DeltaTableError::Generic(error.to_string()))?;
        Ok((store, location.path))
    }
}

impl LogStoreFactory for DeltaStores {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> deltalake_core::DeltaResult<Arc<dyn LogStore>> {
        Ok(default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_urls_parse_to_a_store_and_a_path() {
        let local = StoreUrl::parse("/data/wh").unwrap();
        assert_eq!(local.kind(), StoreKind::Local);
        assert_eq!(local.root().as_str(), "file:///");
        assert_eq!(local.path().as_ref(), "data/wh");
        assert_eq!(local.display(), "/data/wh");
        assert_eq!(
            StoreUrl::parse("/data/pipeline/../wh/.").unwrap(),
            local,
            "a path is normalised as a store path must be"
        );

        let s3 = StoreUrl::parse("s3://lake/warehouse/").unwrap();
        assert_eq!(s3.kind(), StoreKind::S3);
        assert_eq!(s3.root().as_str(), "s3://lake/");
        assert_eq!(s3.path().as_ref(), "warehouse");
        assert_eq!(
            s3.child("raw/events").display(),
            "s3://lake/warehouse/raw/events"
        );
        assert_eq!(
            s3.child("raw").to_url(true).as_str(),
            "s3://lake/warehouse/raw/"
        );

        let azure = StoreUrl::parse("abfss://data@account.dfs.core.windows.net/wh").unwrap();
        assert_eq!(azure.kind(), StoreKind::Azure);
        assert_eq!(
            azure.root().as_str(),
            "abfss://data@account.dfs.core.windows.net/"
        );
        assert_eq!(StoreUrl::parse("gs://b").unwrap().path().as_ref(), "");
    }

    #[test]
    fn unknown_schemes_and_missing_buckets_are_refused() {
        let ftp = StoreUrl::parse("ftp://host/x").unwrap_err().to_string();
        assert!(ftp.contains("not ftp://"), "{ftp}");
        let bare = StoreUrl::parse("s3:///x").unwrap_err().to_string();
        assert!(bare.contains("no bucket"), "{bare}");
    }

    #[test]
    fn store_options_hide_their_values_and_unknown_keys_are_errors() {
        let options: BTreeMap<String, String> = [
            ("aws.secret_access_key".to_owned(), "hunter2".to_owned()),
            ("format.has_header".to_owned(), "true".to_owned()),
        ]
        .into();
        let store = StoreOptions::from_source_options(options);
        assert_eq!(format!("{store:?}"), r#"{"aws.secret_access_key": "***"}"#);
        let bad: BTreeMap<String, String> =
            [("aws.no_such_thing".to_owned(), "1".to_owned())].into();
        let error = StoreUrl::parse("s3://b/x")
            .unwrap()
            .open(&StoreOptions::from_source_options(bad))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("unknown store option 'no_such_thing'"),
            "{error}"
        );
    }

    #[test]
    fn containers_of_one_azure_account_are_different_stores() {
        let registry = StoreRegistry::default();
        let a = Url::parse("abfss://a@acct.dfs.core.windows.net/x").unwrap();
        let b = Url::parse("abfss://b@acct.dfs.core.windows.net/x").unwrap();
        assert_ne!(registry_key(&a), registry_key(&b));
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        registry.register_store(&a, Arc::clone(&store));
        assert!(Arc::ptr_eq(&registry.get_store(&a).unwrap(), &store));
        assert!(registry.deregister_store(&b).is_err());
    }

    #[test]
    fn memory_stores_are_shared_by_name_within_a_process() {
        let a = StoreUrl::parse("memory://shared-test/x").unwrap();
        let b = StoreUrl::parse("memory://shared-test/y").unwrap();
        let other = StoreUrl::parse("memory://other-test/x").unwrap();
        let options = StoreOptions::default();
        assert!(Arc::ptr_eq(
            &a.open(&options).unwrap(),
            &b.open(&options).unwrap()
        ));
        assert!(!Arc::ptr_eq(
            &a.open(&options).unwrap(),
            &other.open(&options).unwrap()
        ));
    }

    #[test]
    fn signed_request_details_are_scrubbed() {
        let text = "GET http://h/c?comp=list&sig=c2VjcmV0 failed: 403 Forbidden\n<AWSAccessKeyId>AKIAEXAMPLE</AWSAccessKeyId>\n<StringToSign>x</StringToSign>\nbucket missing";
        let scrubbed = scrub(text);
        for secret in ["AKIA", "c2VjcmV0", "StringToSign"] {
            assert!(!scrubbed.contains(secret), "{scrubbed}");
        }
        assert!(scrubbed.contains("bucket missing"), "{scrubbed}");
        assert!(scrubbed.contains("GET http://h/c?…"), "{scrubbed}");
        assert!(
            scrubbed.ends_with("check the store's credentials"),
            "{scrubbed}"
        );
    }
}
