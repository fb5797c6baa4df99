//! The disk tier as a [`Level`] of the chain: redb through the group-commit
//! writer ([`crate::store`]).
//!
//! The writer applies each committed change to memory as well (in commit
//! order, after bumping the key's fence), so a client's write reaches memory
//! only once it is durable, and a removal leaves memory when it commits.

use futures::{future::BoxFuture, FutureExt};

use super::tier::{Level, Pending, Tier};
use crate::{
    error::Result,
    store::{disk::Op, Entry, Key, Local},
};

/// redb, behind memory.
pub(crate) struct Disk(pub(crate) Local);

impl Level for Disk {
    fn tier(&self) -> Tier {
        Tier::Disk
    }

    fn get<'a>(&'a self, key: &'a Key) -> BoxFuture<'a, Result<Option<Entry>>> {
        self.0.read(key).boxed()
    }

    fn promote(&self, key: &Key, entry: &Entry) {
        // Queued, not awaited: like any promotion, best effort (a refused
        // write leaves the entry where it was found).
        if self.0.check_size(key, entry).is_ok() {
            let _queued = self.0.persist(key.clone(), entry.clone()).is_ok();
        }
    }

    fn put<'a>(&'a self, key: &'a Key, entry: &'a Entry) -> BoxFuture<'a, Result<()>> {
        async move {
            self.0.check_size(key, entry)?;
            let op = Op::Put {
                key: key.clone(),
                entry: entry.clone(),
            };
            self.0.write(op).await.map(drop)
        }
        .boxed()
    }

    fn write_back(&self, key: &Key, entry: &Entry) -> Result<Option<Pending>> {
        // The commit bumps the key's fence but does not insert the entry
        // into memory a second time.
        let committed = self.0.persist(key.clone(), entry.clone())?;
        Ok(Some(committed.boxed()))
    }

    fn remove<'a>(&'a self, key: &'a Key) -> BoxFuture<'a, Result<bool>> {
        let op = Op::Delete { key: key.clone() };
        async move { Ok(self.0.write(op).await? > 0) }.boxed()
    }

    fn drop_namespace(&self, namespace: u32) -> BoxFuture<'_, Result<u64>> {
        self.0.write(Op::DropNamespace(namespace)).boxed()
    }
}
