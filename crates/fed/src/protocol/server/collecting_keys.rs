//! Stage 1: collecting signed key advertisements, until the cohort is
//! fixed and the neighbourhood graph can be drawn.

use super::*;

/// Stage 1: accepting signed key advertisements.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CollectingKeys {
    pub(super) info: RoundInfo,
    pub(super) advertisements: BTreeMap<DeviceId, AdvertiseKeys>,
}

impl CollectingKeys {
    /// A new round with these (validated) parameters.
    pub fn new(info: RoundInfo) -> Result<Self, ConfigError> {
        info.validate()?;
        Ok(Self {
            info,
            advertisements: BTreeMap::new(),
        })
    }

    /// The round.
    pub fn info(&self) -> &RoundInfo {
        &self.info
    }

    /// Advertisements accepted so far.
    pub fn advertised(&self) -> usize {
        self.advertisements.len()
    }

    /// Accepts a client's advertisement after checking its round, its
    /// signature and that none of its keys is already in use. The server
    /// crate is expected to admit only enrolled, selected devices.
    pub fn receive_advertisement(&mut self, advert: AdvertiseKeys) -> Result<(), ServerError> {
        check_round(&self.info, advert.federation, advert.round)?;
        let device = advert.device;
        if self.advertisements.contains_key(&device) {
            return Err(ServerError::Duplicate { device });
        }
        if self.advertisements.len() >= self.info.max_clients as usize {
            return Err(ServerError::CohortFull {
                max: self.info.max_clients,
            });
        }
        advert
            .verify(&self.info)
            .map_err(|source| ServerError::BadAdvertisement { device, source })?;
        let keys = [advert.share_key.to_bytes(), advert.mask_key.to_bytes()];
        let [share, mask] = keys;
        let reused = share == mask
            || self.advertisements.values().any(|other| {
                [other.share_key.to_bytes(), other.mask_key.to_bytes()]
                    .iter()
                    .any(|k| keys.contains(k))
            });
        if reused {
            return Err(ServerError::KeyReused { device });
        }
        self.advertisements.insert(device, advert);
        Ok(())
    }

    /// Fixes the cohort (everyone who advertised) and its neighbour graph.
    pub fn close(self) -> Result<SharingKeys, Aborted> {
        let Self {
            info,
            advertisements,
        } = self;
        let have = advertisements.len() as u32;
        if have < info.min_clients {
            let reason = AbortReason::TooFewClients {
                have,
                need: info.min_clients,
            };
            return Err(Aborted::new(info, Stage::CollectingKeys, reason));
        }
        let built = info.neighbourhood(have).and_then(|neighbourhood| {
            let graph = NeighbourGraph::new(GraphSpec {
                seed: info.graph_seed,
                federation: info.federation,
                round: info.round,
                nodes: have,
                degree: neighbourhood.degree,
            })?;
            Ok((neighbourhood, graph))
        });
        let (neighbourhood, graph) = match built {
            Ok(built) => built,
            Err(e) => {
                return Err(Aborted::new(
                    info,
                    Stage::CollectingKeys,
                    AbortReason::Neighbourhood(e),
                ));
            }
        };
        let (devices, advertisements) = advertisements.into_iter().unzip();
        let cohort = Cohort {
            devices,
            advertisements,
            graph,
            neighbourhood,
        };
        Ok(SharingKeys {
            info,
            cohort,
            shares: BTreeMap::new(),
            commitments: BTreeMap::new(),
        })
    }
}
