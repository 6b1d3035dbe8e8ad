//! What the campaigns read back from the test Garage cluster, through object_store itself (not
//! pitr-common's client): objects under one prefix of its bucket, listed, fetched and removed.

use anyhow::{Context, Result};
use futures_util::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use pitr_tests::GarageCluster;

/// One prefix of the Garage cluster's bucket.
pub struct Prefix {
    runtime: tokio::runtime::Runtime,
    store: AmazonS3,
    prefix: String,
}

impl Prefix {
    /// The objects under `prefix` (no slash at either end) of `garage`'s bucket.
    pub fn new(garage: &GarageCluster, prefix: &str) -> Result<Prefix> {
        let store = AmazonS3Builder::new()
            .with_endpoint(garage.endpoint())
            .with_allow_http(true)
            .with_bucket_name(garage.bucket())
            .with_region(garage.region())
            .with_access_key_id(garage.key_id())
            .with_secret_access_key(garage.secret())
            .build()
            .context("opening the Garage bucket")?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting a runtime for the Garage bucket")?;
        Ok(Prefix {
            runtime,
            store,
            prefix: prefix.to_owned(),
        })
    }

    fn path(&self, name: &str) -> ObjectPath {
        ObjectPath::from(format!("{}/{name}", self.prefix))
    }

    /// The object `name`'s bytes, or `None` when there is none.
    pub fn get(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let path = self.path(name);
        self.runtime
            .block_on(async {
                match self.store.get(&path).await {
                    Ok(r) => Ok(Some(r.bytes().await?.to_vec())),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .with_context(|| format!("reading s3 object {path}"))
    }

    /// The names under the prefix.
    pub fn names(&self) -> Result<Vec<String>> {
        let prefix = ObjectPath::from(self.prefix.as_str());
        let listed: Vec<_> = self
            .runtime
            .block_on(self.store.list(Some(&prefix)).try_collect())
            .with_context(|| format!("listing s3 prefix {prefix}"))?;
        Ok(listed
            .into_iter()
            .filter_map(|m: object_store::ObjectMeta| m.location.filename().map(str::to_owned))
            .collect())
    }

    /// Removes `name`.
    pub fn remove(&self, name: &str) -> Result<()> {
        let path = self.path(name);
        self.runtime
            .block_on(self.store.delete(&path))
            .with_context(|| format!("removing s3 object {path}"))
    }
}
