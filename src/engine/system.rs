//! What the engine says about itself and its host (`stackctl version`).

use super::{Engine, EngineError};

/// The engine's version, the API it speaks, and the machine it runs on.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct EngineVersion {
    /// The engine's version (`27.3.1`).
    pub version: String,
    /// The newest API version the engine speaks (`1.47`).
    pub api_version: String,
    /// The oldest API version it accepts.
    pub min_api_version: String,
    /// The API version stackctl and the engine agreed on.
    pub negotiated_api_version: String,
    pub os: String,
    pub arch: String,
    pub kernel_version: String,
    /// The engine's host name.
    pub host_name: String,
    /// The host's operating system (`Debian GNU/Linux 12 (bookworm)`).
    pub operating_system: String,
    pub cpus: i64,
    pub memory_bytes: i64,
}

impl Engine {
    /// The engine's version and its host, from `/version` and `/info` (asked together).
    pub async fn version(&self) -> Result<EngineVersion, EngineError> {
        let (version, info) = tokio::try_join!(
            async {
                self.client()
                    .version()
                    .await
                    .map_err(|err| self.error("read", "the engine's version", err))
            },
            async {
                self.client()
                    .info()
                    .await
                    .map_err(|err| self.error("read", "the engine's information", err))
            }
        )?;
        let negotiated = self.client().client_version();
        Ok(EngineVersion {
            version: version.version.unwrap_or_default(),
            api_version: version.api_version.unwrap_or_default(),
            min_api_version: version.min_api_version.unwrap_or_default(),
            negotiated_api_version: format!(
                "{}.{}",
                negotiated.major_version, negotiated.minor_version
            ),
            os: version.os.unwrap_or_default(),
            arch: version.arch.unwrap_or_default(),
            kernel_version: version.kernel_version.unwrap_or_default(),
            host_name: info.name.unwrap_or_default(),
            operating_system: info.operating_system.unwrap_or_default(),
            cpus: info.ncpu.unwrap_or_default(),
            memory_bytes: info.mem_total.unwrap_or_default(),
        })
    }
}
