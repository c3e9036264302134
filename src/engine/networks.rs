//! The stage's networks: made once, found by ID, checked for ownership and driver, removed.
//!
//! The engine (API 1.41) happily creates two networks of one name, and every later call that
//! names the network then fails with "ambiguous". The request model of the client library
//! (API 1.53) cannot send `CheckDuplicate` (the field left the API in 1.44, when the engine
//! began to refuse duplicates itself), so a duplicate is prevented here instead: callers
//! serialise creation with the stage lock, [`Engine::ensure_network`] looks before it
//! creates, and after creating it looks again and settles a race with another host or user
//! (the oldest network wins; the loser removes the one it just made). A duplicate left by an
//! older version is repaired the same way when its extra copies are empty.

use std::collections::HashMap;

use bollard::models::{Ipam, IpamConfig, Network, NetworkCreateRequest};
use bollard::query_parameters::{InspectNetworkOptions, ListNetworksOptionsBuilder};

use super::{is_not_found, label_filters, Engine, EngineError};
use crate::error::Hint;
use crate::names;
use crate::plan::objects::NetworkSpec;

/// A network the engine holds under a wanted name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkFound {
    pub id: String,
    pub name: String,
    pub driver: String,
    pub labels: HashMap<String, String>,
    /// `Created` as the engine wrote it (RFC 3339 with nanoseconds).
    pub created: String,
}

impl NetworkFound {
    fn from_summary(network: Network) -> NetworkFound {
        NetworkFound {
            id: network.id.unwrap_or_default(),
            name: network.name.unwrap_or_default(),
            driver: network.driver.unwrap_or_default(),
            labels: network.labels.unwrap_or_default(),
            created: network.created.map(super::rfc3339).unwrap_or_default(),
        }
    }

    /// Whether it carries this stage's ownership labels.
    pub fn is_stage(&self, stage: &str, project: &str) -> bool {
        self.labels.get(names::PROJECT).map(String::as_str) == Some(project)
            && self.labels.get(names::STAGE).map(String::as_str) == Some(stage)
    }

    fn short_id(&self) -> &str {
        &self.id[..self.id.len().min(12)]
    }
}

/// A sort key for `Created` that orders correctly: Go trims trailing zeros of the fraction
/// (`…:48.12345Z` is earlier than `…:48.123456789Z`, but sorts after it as text).
fn created_key(created: &str) -> (String, String) {
    let (seconds, rest) = match created.split_once('.') {
        Some((seconds, rest)) => (seconds, rest),
        None => (created.get(..19).unwrap_or(created), ""),
    };
    let fraction: String = rest.chars().take_while(char::is_ascii_digit).collect();
    (seconds.to_string(), format!("{fraction:0<9}"))
}

/// The one to keep among copies of one name: the oldest (then the smallest ID, so every
/// process picks the same one).
fn oldest(found: &[NetworkFound]) -> Option<&NetworkFound> {
    found
        .iter()
        .min_by(|a, b| (created_key(&a.created), &a.id).cmp(&(created_key(&b.created), &b.id)))
}

/// Why a wanted network could not be used.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("a network that is not this stage's holds the name `{name}` (ID {id}, without the labels of stage `{stage}`): stackctl will not use or create a second one")]
    Foreign {
        name: String,
        key: String,
        id: String,
        stage: String,
    },
    #[error(
        "network `{name}` exists with driver `{found}`, but networks.{key} asks for `{wanted}`"
    )]
    Driver {
        name: String,
        key: String,
        found: String,
        wanted: String,
    },
    #[error("network `{name}` exists {count} times (IDs {ids}) and the extra copies are in use")]
    Duplicate {
        name: String,
        count: usize,
        ids: String,
    },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl Hint for NetworkError {
    /// What to do about it, printed as `hint:` by the reporter.
    fn hint(&self) -> Option<String> {
        match self {
            NetworkError::Foreign { name: _, key, id, .. } => Some(format!(
                "remove or rename it (`docker network rm {id}`), give networks.{key} another `name:`, or declare it `external: true` to use it as it is"
            )),
            NetworkError::Driver { wanted, .. } => Some(format!(
                "`stackctl down` removes the stage's networks; the next `up` creates it with `{wanted}`"
            )),
            NetworkError::Duplicate { .. } => Some(
                "`stackctl down` removes every copy (by ID); then run the command again".to_string(),
            ),
            NetworkError::Engine(err) => err.hint(),
        }
    }
}

impl Engine {
    /// Networks whose name is exactly `name` (the engine's name filter matches parts).
    pub async fn networks_named(&self, name: &str) -> Result<Vec<NetworkFound>, EngineError> {
        let filters = HashMap::from([("name".to_string(), vec![name.to_string()])]);
        let options = ListNetworksOptionsBuilder::default()
            .filters(&filters)
            .build();
        let networks = self
            .client()
            .list_networks(Some(options))
            .await
            .map_err(|err| self.error("list networks named", name, err))?;
        Ok(networks
            .into_iter()
            .map(NetworkFound::from_summary)
            .filter(|n| n.name == name)
            .collect())
    }

    /// Every network carrying this stage's labels, each copy of a duplicated name included.
    pub async fn stage_networks(
        &self,
        stage: &str,
        project: &str,
    ) -> Result<Vec<NetworkFound>, EngineError> {
        let options = ListNetworksOptionsBuilder::default()
            .filters(&label_filters(&names::stage_filter(stage, project)))
            .build();
        let networks = self
            .client()
            .list_networks(Some(options))
            .await
            .map_err(|err| self.error("list", "networks", err))?;
        let mut found: Vec<NetworkFound> = networks
            .into_iter()
            .map(NetworkFound::from_summary)
            .collect();
        found.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
        Ok(found)
    }

    /// Make sure the stage's network `want` exists exactly once and return its ID: use the
    /// stage's own network of that name (checking its driver), create it when there is none,
    /// refuse a foreign one of that name, and remove empty extra copies of the stage's own.
    /// Returns the ID and whether this call created it.
    pub async fn ensure_network(&self, want: &NetworkSpec) -> Result<(String, bool), NetworkError> {
        // A create that lost a race to another process answers 409 (newer engines) or makes
        // a duplicate (20.10): both end in one more look, settled below.
        for _ in 0..3 {
            if let Some(id) = self.settle(want, None).await? {
                return Ok((id, false));
            }
            let request = NetworkCreateRequest {
                name: want.name.clone(),
                driver: Some(want.driver.clone()),
                labels: Some(want.labels.clone()),
                options: (!want.options.is_empty()).then(|| want.options.clone()),
                internal: want.internal.then_some(true),
                attachable: want.attachable.then_some(true),
                enable_ipv6: want.enable_ipv6.then_some(true),
                ipam: want.ipam.as_ref().map(|ipam| Ipam {
                    driver: ipam.driver.clone(),
                    config: Some(
                        ipam.pools
                            .iter()
                            .map(|pool| IpamConfig {
                                subnet: pool.subnet.clone(),
                                ip_range: pool.ip_range.clone(),
                                gateway: pool.gateway.clone(),
                                auxiliary_addresses: (!pool.aux_addresses.is_empty())
                                    .then(|| pool.aux_addresses.clone()),
                            })
                            .collect(),
                    ),
                    options: (!ipam.options.is_empty()).then(|| ipam.options.clone()),
                }),
                ..Default::default()
            };
            match self.client().create_network(request).await {
                Ok(created) => {
                    let created = created.id;
                    let kept = self.settle(want, Some(&created)).await?;
                    return Ok(match kept {
                        Some(id) => {
                            let made = id == created;
                            (id, made)
                        }
                        None => (created, true),
                    });
                }
                Err(err) => {
                    let err = self.error("create network", &want.name, err);
                    if err.status != Some(409) && !err.message.contains("already exists") {
                        return Err(err.into());
                    }
                }
            }
        }
        Err(EngineError::other(
            "create network",
            &want.name,
            "it kept appearing and disappearing while being created",
        )
        .into())
    }

    /// Look at what holds the wanted name: None when nothing does; the ID to use otherwise.
    /// Extra copies of the stage's own network are removed when empty (`just_created`, when
    /// this process made one of them, is removed first if it is not the one kept).
    async fn settle(
        &self,
        want: &NetworkSpec,
        just_created: Option<&str>,
    ) -> Result<Option<String>, NetworkError> {
        let found = self.networks_named(&want.name).await?;
        if let Some(foreign) = found
            .iter()
            .find(|n| !n.is_stage(&want.stage, &want.project))
        {
            return Err(NetworkError::Foreign {
                name: want.name.clone(),
                key: want.key.clone(),
                id: foreign.short_id().to_string(),
                stage: want.stage.clone(),
            });
        }
        let Some(keep) = oldest(&found).cloned() else {
            return Ok(None);
        };
        let mut in_use = Vec::new();
        for extra in found.iter().filter(|n| n.id != keep.id) {
            match self.client().remove_network(&extra.id).await {
                Ok(()) => {}
                Err(err) if is_not_found(&err) => {}
                Err(_) if Some(extra.id.as_str()) != just_created => {
                    in_use.push(extra.short_id().to_string())
                }
                Err(err) => return Err(self.error("remove network", &extra.id, err).into()),
            }
        }
        if !in_use.is_empty() {
            in_use.insert(0, keep.short_id().to_string());
            return Err(NetworkError::Duplicate {
                name: want.name.clone(),
                count: in_use.len(),
                ids: in_use.join(", "),
            });
        }
        if keep.driver != want.driver {
            return Err(NetworkError::Driver {
                name: want.name.clone(),
                key: want.key.clone(),
                found: keep.driver,
                wanted: want.driver.clone(),
            });
        }
        Ok(Some(keep.id))
    }

    /// Check the stage's existing networks against what the stack wants, in one list call:
    /// a network whose driver differs is named (it is not silently kept), and a name the
    /// stage holds twice is settled as [`Engine::ensure_network`] does.
    pub async fn check_networks(
        &self,
        stage: &str,
        project: &str,
        wanted: &[NetworkSpec],
    ) -> Result<(), NetworkError> {
        let found = self.stage_networks(stage, project).await?;
        for want in wanted {
            let copies: Vec<&NetworkFound> = found.iter().filter(|n| n.name == want.name).collect();
            match copies.as_slice() {
                [] => {}
                [one] if one.driver == want.driver => {}
                [one] => {
                    return Err(NetworkError::Driver {
                        name: want.name.clone(),
                        key: want.key.clone(),
                        found: one.driver.clone(),
                        wanted: want.driver.clone(),
                    })
                }
                _ => {
                    self.settle(want, None).await?;
                }
            }
        }
        Ok(())
    }

    /// True when a network of this name (or ID) exists.
    pub async fn network_exists(&self, name: &str) -> Result<bool, EngineError> {
        match self
            .client()
            .inspect_network(name, None::<InspectNetworkOptions>)
            .await
        {
            Ok(_) => Ok(true),
            Err(err) if is_not_found(&err) => Ok(false),
            // Two networks of one name: it exists (settled by `ensure_network`).
            Err(err) if err.to_string().contains("ambiguous") => Ok(true),
            Err(err) => Err(self.error("inspect network", name, err)),
        }
    }

    /// Remove a network by ID (or name); a missing one is fine.
    pub async fn remove_network(&self, id: &str) -> Result<(), EngineError> {
        match self.client().remove_network(id).await {
            Ok(()) => Ok(()),
            Err(err) if is_not_found(&err) => Ok(()),
            Err(err) => Err(self.error("remove network", id, err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_network_create_without_an_address_pool_left_hints_at_prune_and_pools() {
        for message in [
            "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network",
            "no available address pool",
        ] {
            let err = NetworkError::from(EngineError::other(
                "create network",
                "dev-app_default",
                message,
            ));
            let hint = err.hint().expect("a hint");
            assert!(hint.contains("docker network prune"), "{hint}");
            assert!(hint.contains("default-address-pools"), "{hint}");
        }
        let other = NetworkError::from(EngineError::other(
            "create network",
            "dev-app_default",
            "invalid subnet",
        ));
        assert_eq!(other.hint(), None);
    }

    fn network(id: &str, created: &str) -> NetworkFound {
        NetworkFound {
            id: id.to_string(),
            name: "dev-app_default".to_string(),
            driver: "bridge".to_string(),
            labels: HashMap::new(),
            created: created.to_string(),
        }
    }

    #[test]
    fn engine_times_sort_as_text_in_time_order() {
        use std::time::{Duration, UNIX_EPOCH};
        // 09:59:59.5 and 10:00:00.25 on 2026-11-30: as text, in the same order.
        let nine = UNIX_EPOCH + Duration::from_millis(1_796_032_799_500);
        let ten = UNIX_EPOCH + Duration::from_millis(1_796_032_800_250);
        let (a, b) = (super::super::rfc3339(nine), super::super::rfc3339(ten));
        assert_eq!(a, "2026-11-30T09:59:59.500000000Z");
        assert_eq!(b, "2026-11-30T10:00:00.250000000Z");
        assert!(a < b);
        assert_eq!(super::super::rfc3339(UNIX_EPOCH), "");
    }

    #[test]
    fn oldest_network_wins_with_go_trimmed_fractions() {
        // Go writes `.12345Z` for .123450000: as text it sorts after `.123456789Z`.
        let found = [
            network("bbb", "2026-11-30T09:40:48.123456789Z"),
            network("ccc", "2026-11-30T09:40:48.12345Z"),
            network("aaa", "2026-11-30T09:40:49Z"),
        ];
        assert_eq!(oldest(&found).map(|n| n.id.as_str()), Some("ccc"));
    }

    #[test]
    fn equal_creation_times_are_settled_by_id() {
        let found = [
            network("b2", "2026-11-30T09:40:48.5Z"),
            network("a1", "2026-11-30T09:40:48.500Z"),
        ];
        assert_eq!(oldest(&found).map(|n| n.id.as_str()), Some("a1"));
        assert_eq!(oldest(&[]), None);
    }
}
