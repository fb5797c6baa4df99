//! One multiplexed connection to Redis: a [`ConnectionManager`] (which
//! connects on first use and reconnects by itself) for a single node, a
//! cluster connection (made on first use) for a Redis Cluster. Nothing
//! here waits at start-up; every call is bounded by the caller's timeout.

use std::time::Duration;

use redis::{
    aio::{ConnectionManager, ConnectionManagerConfig},
    cluster::ClusterClient,
    cluster_async::ClusterConnection,
    Cmd, FromRedisValue, RedisResult,
};
use tokio::sync::OnceCell;

use crate::store::SharedOptions;

pub(crate) enum Conn {
    Single(ConnectionManager),
    /// Boxed: a cluster client is large, and rare.
    Cluster(Box<Cluster>),
}

pub(crate) struct Cluster {
    client: ClusterClient,
    conn: OnceCell<ClusterConnection>,
}

impl Conn {
    /// Set up the connection without connecting. Fails only on an invalid
    /// URL.
    pub(crate) fn open(options: &SharedOptions) -> RedisResult<Conn> {
        // rustls needs one crypto provider for `rediss://`; another part
        // of the process may have installed one already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let urls: Vec<&str> = options.url.urls().collect();
        if options.cluster {
            let client = ClusterClient::builder(urls)
                .connection_timeout(options.timeout)
                .response_timeout(options.timeout)
                .retries(1)
                .build()?;
            let conn = OnceCell::new();
            return Ok(Conn::Cluster(Box::new(Cluster { client, conn })));
        }
        let client = redis::Client::open(urls[0])?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.timeout))
            .set_response_timeout(Some(options.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        Ok(Conn::Single(ConnectionManager::new_lazy_with_config(
            client, config,
        )?))
    }

    /// Send `cmd` and read its reply.
    pub(crate) async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> RedisResult<T> {
        match self {
            Conn::Single(conn) => cmd.query_async(&mut conn.clone()).await,
            Conn::Cluster(cluster) => {
                let conn = cluster
                    .conn
                    .get_or_try_init(|| cluster.client.get_async_connection())
                    .await?;
                cmd.query_async(&mut conn.clone()).await
            }
        }
    }
}
