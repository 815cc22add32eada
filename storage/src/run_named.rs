//! An object store that names the data files a writer creates after the run writing
//! them, so a sweep after a cancelled run finds that run's files by name and never
//! touches another run's (deltalake's writer names its files itself).

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

use crate::paths;

/// Delegates to `inner`, with every data file name given the run's prefix on the way.
#[derive(Debug)]
pub struct RunNamedStore {
    inner: Arc<dyn ObjectStore>,
    prefix: String,
}

impl RunNamedStore {
    /// A store whose data files start with `prefix` ([`paths::run_file_prefix`]).
    pub fn new(inner: Arc<dyn ObjectStore>, prefix: String) -> Self {
        Self { inner, prefix }
    }

    /// Where the file a writer names `location` really is.
    pub fn location(&self, location: &Path) -> Path {
        run_named(&self.prefix, location)
    }
}

/// `location` with its data file name given `prefix`; other paths as they are.
pub fn run_named(prefix: &str, location: &Path) -> Path {
    let Some(name) = location.filename() else {
        return location.clone();
    };
    match paths::run_data_file(prefix, name) {
        Some(renamed) => {
            let mut parts: Vec<_> = location.parts().collect();
            parts.pop();
            parts.push(renamed.as_str().into());
            Path::from_iter(parts)
        }
        None => location.clone(),
    }
}

/// A Delta `add` action's path (relative, percent-encoded) as [`run_named`] stores it.
pub fn run_named_relative(prefix: &str, path: &str) -> String {
    let (directory, name) = path.rsplit_once('/').unwrap_or(("", path));
    match paths::run_data_file(prefix, name) {
        Some(renamed) if directory.is_empty() => renamed,
        Some(renamed) => format!("{directory}/{renamed}"),
        None => path.to_owned(),
    }
}

impl fmt::Display for RunNamedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RunNamedStore({}, {})", self.prefix, self.inner)
    }
}

#[async_trait]
impl ObjectStore for RunNamedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner
            .put_opts(&self.location(location), payload, opts)
            .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner
            .put_multipart_opts(&self.location(location), opts)
            .await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(&self.location(location), options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.inner
            .get_ranges(&self.location(location), ranges)
            .await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let prefix = self.prefix.clone();
        self.inner.delete_stream(
            locations
                .map(move |location| location.map(|location| run_named(&prefix, &location)))
                .boxed(),
        )
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner
            .copy_opts(&self.location(from), &self.location(to), options)
            .await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner
            .rename_opts(&self.location(from), &self.location(to), options)
            .await
    }
}

#[cfg(test)]
mod tests {
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    use super::*;

    #[tokio::test]
    async fn data_files_are_written_and_read_under_the_run_s_name() {
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let prefix = paths::run_file_prefix("run-7");
        let store = RunNamedStore::new(Arc::clone(&inner), prefix.clone());
        let written = Path::from("day=1/part-00001-abc-c000.snappy.parquet");
        store.put(&written, "PAR1".into()).await.unwrap();
        let real = Path::from(format!("day=1/{prefix}00001-abc-c000.snappy.parquet"));
        assert_eq!(store.location(&written), real);
        assert!(inner.head(&real).await.is_ok());
        assert!(inner.head(&written).await.is_err());
        assert_eq!(
            store.get(&written).await.unwrap().bytes().await.unwrap(),
            "PAR1"
        );
        assert_eq!(
            store.location(&real),
            real,
            "a named file is not named again"
        );
        let log = Path::from("_delta_log/00000000000000000000.json");
        assert_eq!(store.location(&log), log, "only data files are renamed");
        assert_eq!(
            run_named_relative(&prefix, "city=S%C3%A3o/part-00002-x.parquet"),
            format!("city=S%C3%A3o/{prefix}00002-x.parquet")
        );
        assert_eq!(
            run_named_relative(&prefix, "part-00002-x.parquet"),
            format!("{prefix}00002-x.parquet")
        );
        store.delete(&written).await.unwrap();
        assert!(inner.head(&real).await.is_err());
    }
}
