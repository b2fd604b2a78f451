//! Steps 1 to 4 on the device: checking the neighbours' signed keys,
//! sealing shares to them, and opening (and checking) theirs.

use super::*;

/// After step 1: waiting for the cohort and neighbours' keys.
pub struct ClientAwaitingNeighbours {
    pub(super) info: RoundInfo,
    pub(super) device: DeviceId,
    pub(super) secrets: RoundSecrets,
    pub(super) public: RoundPublicKeys,
}

/// A neighbour whose advertisement verified.
pub(super) struct Neighbour {
    pub(super) position: u32,
    pub(super) share_key: PublicKey,
    pub(super) pairwise_seed: MaskSeed,
}

impl ClientAwaitingNeighbours {
    /// The round.
    pub fn info(&self) -> &RoundInfo {
        &self.info
    }

    /// Steps 2–3: checks the cohort and every neighbour's signed keys,
    /// derives pairwise seeds, and seals shares of `σ` and `β` to each
    /// neighbour.
    pub fn receive_neighbours<R: CryptoRngCore + ?Sized>(
        self,
        message: &NeighbourKeys,
        rng: &mut R,
    ) -> Result<(EncryptedShares, ClientAwaitingShares), ClientError> {
        let info = &self.info;
        check_round(info, message.federation, message.round)?;
        let cohort = &message.cohort;
        if !cohort.windows(2).all(|w| matches!(w, [a, b] if a < b)) {
            return Err(ClientError::CohortNotSorted);
        }
        let size = cohort.len();
        if size < info.min_clients as usize || size > info.max_clients as usize {
            return Err(ClientError::CohortSize {
                size,
                min: info.min_clients,
                max: info.max_clients,
            });
        }
        let position = cohort
            .binary_search(&self.device)
            .map_err(|_| ClientError::NotInCohort)?;
        let (nodes, position) = (size as u32, position as u32);
        let neighbourhood = info.neighbourhood(nodes)?;
        let graph = NeighbourGraph::new(GraphSpec {
            seed: info.graph_seed,
            federation: info.federation,
            round: info.round,
            nodes,
            degree: neighbourhood.degree,
        })?;
        let expected: BTreeMap<DeviceId, u32> = graph
            .neighbours(position)
            .into_iter()
            .filter_map(|p| cohort.get(p as usize).map(|d| (*d, p)))
            .collect();

        // Every neighbour's advertisement, once, verified, for this round.
        let mut adverts: BTreeMap<DeviceId, &AdvertiseKeys> = BTreeMap::new();
        for advert in &message.advertisements {
            let device = advert.device;
            if !expected.contains_key(&device) || adverts.insert(device, advert).is_some() {
                return Err(ClientError::UnexpectedAdvertisement { device });
            }
            check_round(info, advert.federation, advert.round)?;
            advert
                .verify(info)
                .map_err(|source| ClientError::BadAdvertisement { device, source })?;
        }
        if let Some(device) = expected.keys().find(|d| !adverts.contains_key(d)) {
            return Err(ClientError::MissingAdvertisement { device: *device });
        }

        // No public key may appear twice among ours and our neighbours'.
        let mut seen_keys: BTreeSet<[u8; 32]> = [
            self.public.share_key.to_bytes(),
            self.public.mask_key.to_bytes(),
        ]
        .into();
        for (device, advert) in &adverts {
            for key in [advert.share_key, advert.mask_key] {
                if !seen_keys.insert(key.to_bytes()) {
                    return Err(ClientError::KeyReused { device: *device });
                }
            }
        }

        let context = info.context();
        let mask_secret =
            mask_agreement_secret(self.secrets.mask_scalar.expose(), &context, &self.device);
        let mut neighbours = BTreeMap::new();
        for (device, advert) in &adverts {
            let seed = pairwise_seed(
                &mask_secret,
                &advert.mask_key,
                &context,
                &self.device,
                device,
            )
            .map_err(|_| ClientError::NonContributory { device: *device })?;
            let position = expected.get(device).copied().unwrap_or_default();
            neighbours.insert(
                *device,
                Neighbour {
                    position,
                    share_key: advert.share_key,
                    pairwise_seed: seed,
                },
            );
        }
        drop(mask_secret);

        let cohort_digest = cohort_digest(cohort);
        // Shamir-share σ and β among the neighbours, at x = position + 1.
        let threshold = neighbourhood.threshold as usize;
        let xs: Vec<u32> = neighbours.values().map(|n| n.position + 1).collect();
        let (sigma_shares, sigma_commitments) =
            shamir::split_verifiable(self.secrets.mask_scalar.expose(), threshold, &xs, rng)?;
        let (beta_shares, beta_commitments) =
            shamir::split_verifiable(self.secrets.self_mask_scalar.expose(), threshold, &xs, rng)?;
        let mut sealed = Vec::with_capacity(neighbours.len());
        for ((device, neighbour), (sigma, beta)) in
            neighbours.iter().zip(sigma_shares.iter().zip(&beta_shares))
        {
            let pair = SharePair {
                mask_scalar_share: sigma.y,
                self_mask_share: beta.y,
            };
            let envelope = Envelope {
                context: &context,
                cohort: &cohort_digest,
                sender: &self.device,
                recipient: device,
                x: neighbour.position + 1,
            };
            let ciphertext = share_box::seal(
                &self.secrets.share_secret,
                &neighbour.share_key,
                envelope,
                &pair,
            )
            .map_err(|_| ClientError::NonContributory { device: *device })?;
            sealed.push(ShareForRecipient {
                recipient: *device,
                ciphertext,
            });
        }

        let self_mask = self_mask_seed(
            self.secrets.self_mask_scalar.expose(),
            &context,
            &self.device,
        );
        let ClientAwaitingNeighbours {
            info,
            device,
            secrets,
            ..
        } = self;
        let RoundSecrets {
            share_secret,
            mask_scalar,
            self_mask_scalar,
        } = secrets;
        // σ and β have been shared and turned into seeds; they go now.
        drop((mask_scalar, self_mask_scalar));
        let message = EncryptedShares {
            federation: info.federation,
            round: info.round,
            sender: device,
            shares: sealed,
            commitments: SharingCommitments {
                mask_scalar: sigma_commitments,
                self_mask: beta_commitments,
            },
        };
        let next = ClientAwaitingShares {
            info,
            device,
            position,
            threshold,
            cohort: CohortView {
                size,
                digest: cohort_digest,
            },
            share_secret,
            neighbours,
            self_mask,
        };
        Ok((message, next))
    }
}

/// After step 3: waiting for the shares neighbours sealed to this client.
pub struct ClientAwaitingShares {
    pub(super) info: RoundInfo,
    pub(super) device: DeviceId,
    pub(super) position: u32,
    pub(super) threshold: usize,
    pub(super) cohort: CohortView,
    pub(super) share_secret: StaticSecret,
    pub(super) neighbours: BTreeMap<DeviceId, Neighbour>,
    pub(super) self_mask: MaskSeed,
}

impl ClientAwaitingShares {
    /// Step 4: opens the forwarded shares. Their senders are the neighbours
    /// this client will mask with.
    pub fn receive_shares(
        self,
        message: &SharesForDevice,
    ) -> Result<ClientReadyToUpload, ClientError> {
        check_round(&self.info, message.federation, message.round)?;
        if message.recipient != self.device {
            return Err(ClientError::WrongRecipient {
                recipient: message.recipient,
            });
        }
        let context = self.info.context();
        let mut held: BTreeMap<DeviceId, Held> = BTreeMap::new();
        for share in &message.shares {
            let sender = share.sender;
            let neighbour = self
                .neighbours
                .get(&sender)
                .filter(|_| !held.contains_key(&sender))
                .ok_or(ClientError::UnexpectedSender { device: sender })?;
            let envelope = Envelope {
                context: &context,
                cohort: &self.cohort.digest,
                sender: &sender,
                recipient: &self.device,
                x: self.position + 1,
            };
            let pair = share_box::open(
                &self.share_secret,
                &neighbour.share_key,
                envelope,
                &share.ciphertext,
            )
            .map_err(|source| ClientError::ShareDecryption { sender, source })?;
            let x = self.position + 1;
            let committed = |commitments: &Commitments, y| {
                commitments.threshold() == self.threshold && commitments.verify(&Share { x, y })
            };
            if !committed(&share.commitments.mask_scalar, pair.mask_scalar_share)
                || !committed(&share.commitments.self_mask, pair.self_mask_share)
            {
                return Err(ClientError::UncommittedShare { sender });
            }
            held.insert(
                sender,
                Held {
                    position: neighbour.position,
                    pair,
                },
            );
        }
        if held.len() < self.threshold {
            return Err(ClientError::TooFewShares {
                have: held.len(),
                need: self.threshold,
            });
        }
        let ClientAwaitingShares {
            info,
            device,
            position,
            threshold,
            cohort,
            neighbours,
            self_mask,
            ..
        } = self;
        // Pairwise seeds of neighbours that did not share are dropped here:
        // the server will not count them, so neither may we.
        let masking_with = neighbours
            .into_iter()
            .filter(|(d, _)| held.contains_key(d))
            .map(|(_, n)| (n.position, n.pairwise_seed))
            .collect();
        Ok(ClientReadyToUpload {
            info,
            device,
            position,
            threshold,
            cohort,
            masking_with,
            self_mask,
            held,
        })
    }
}
