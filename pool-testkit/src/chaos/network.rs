//! The proxy between the pool and the server: the one place the chaos run touches
//! [`FaultProxy`].

use std::net::SocketAddr;

use super::faults::NetworkFault;
use crate::proxy::FaultProxy;

/// A fault proxy in front of the server under test.
pub(crate) struct Network {
    proxy: FaultProxy,
}

impl Network {
    /// Starts a proxy forwarding to `upstream`.
    pub(crate) async fn start(upstream: SocketAddr) -> Result<Self, String> {
        let proxy = FaultProxy::start(upstream)
            .await
            .map_err(|e| format!("starting a fault proxy in front of {upstream}: {e}"))?;
        Ok(Network { proxy })
    }

    /// Where the pool connects.
    pub(crate) fn address(&self) -> SocketAddr {
        self.proxy.address()
    }

    /// Starts `fault`; it lasts until [`heal`](Self::heal).
    pub(crate) fn inject(&self, fault: NetworkFault) {
        match fault {
            NetworkFault::Latency { fixed, jitter } => self.proxy.add_latency(fixed, jitter),
            NetworkFault::Blackhole => self.proxy.blackhole(),
            NetworkFault::ResetAll => self.proxy.reset_all(),
            NetworkFault::Refuse => self.proxy.refuse(),
            NetworkFault::CutAfter(bytes) => self.proxy.cut_after(bytes),
        }
    }

    /// Ends every fault: the proxy forwards as it should again.
    pub(crate) fn heal(&self) {
        self.proxy.heal();
    }

    /// Connections the proxy accepted from the pool over the run.
    pub(crate) fn accepted(&self) -> u64 {
        self.proxy.accepted()
    }

    /// Connections open through the proxy now.
    pub(crate) fn open_connections(&self) -> usize {
        self.proxy.open_connections()
    }
}
