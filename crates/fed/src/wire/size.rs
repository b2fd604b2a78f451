//! The exact number of bytes a client sends in a round, to check the
//! promise that SecAgg costs little more than a plain upload.

use curve25519_dalek::Scalar;
use ed25519_dalek::Signature;
use x25519_dalek::PublicKey;

use super::SharingCommitments;
use super::{
    AdvertiseKeys, ClientMessage, ConsistencySignature, EncryptedShares, MaskedUpload,
    RevealedShare, SEALED_SHARE_LEN, ServerMessage, ShareForRecipient, SurvivorSet,
    SurvivorSignature, UnmaskRequest, UnmaskResponse,
};
use crate::crypto::DeviceId;
use crate::ids::{FederationId, RoundId};
use crate::shamir::{Commitments, CommittedPoint};

/// Bytes one client sends in one round, by message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientBytes {
    /// Step 1, JSON.
    pub advertise: usize,
    /// Step 3, JSON.
    pub shares: usize,
    /// Step 5, binary.
    pub upload: usize,
    /// Step 7, JSON: the signature over the survivor set.
    pub consistency: usize,
    /// Step 9, JSON (one share per neighbour, whichever kind).
    pub unmask: usize,
    /// Steps 6 and 8, received, JSON: the survivor set (a bitmap over the
    /// cohort) and the unmask request carrying every neighbour's signature.
    /// With [`ClientBytes::consistency`], what the consistency round adds.
    pub consistency_received: usize,
    /// The same update sent as plain little-endian `f32`s, no header.
    pub plain_f32: usize,
}

impl ClientBytes {
    /// Everything sent.
    pub fn total(&self) -> usize {
        self.advertise + self.shares + self.upload + self.consistency + self.unmask
    }

    /// What the consistency round adds to a device's traffic, both ways.
    pub fn consistency_overhead(&self) -> usize {
        self.consistency + self.consistency_received
    }

    /// `total / plain_f32`.
    pub fn ratio(&self) -> f64 {
        self.total() as f64 / self.plain_f32.max(1) as f64
    }
}

/// The exact bytes a client sends for a `vector_len`-parameter update with
/// `neighbours` neighbours in a cohort of `cohort`, as [`ClientMessage`] JSON for the small
/// messages and the binary codec for the upload. Every field of every
/// message is fixed width except the decimal round number, so the count is
/// exact for a response in which every neighbour survived (the common
/// case); when the unmask response splits its shares over both lists it is
/// one byte (a comma) shorter. `None` if serialization fails.
pub fn client_bytes_per_round(
    federation: FederationId,
    round: RoundId,
    vector_len: usize,
    neighbours: usize,
    cohort: usize,
) -> Option<ClientBytes> {
    let device = DeviceId::from_bytes([0; 32]);
    let json = |m: ClientMessage| m.to_json().ok().map(|b| b.len());
    let received = |m: ServerMessage| m.to_json().ok().map(|b| b.len());
    let signature = Signature::from_bytes(&[0; 64]);
    let bitmap = vec![0u8; cohort.div_ceil(8)];
    let consistency = json(ClientMessage::ConsistencySignature(ConsistencySignature {
        federation,
        round,
        sender: device,
        signature,
    }))?;
    let consistency_received = received(ServerMessage::SurvivorSet(SurvivorSet {
        federation,
        round,
        recipient: device,
        survivors: bitmap.clone(),
    }))? + received(ServerMessage::UnmaskRequest(UnmaskRequest {
        federation,
        round,
        recipient: device,
        survivors: bitmap,
        signatures: (0..neighbours)
            .map(|_| SurvivorSignature { device, signature })
            .collect(),
    }))?;
    let advertise = json(ClientMessage::AdvertiseKeys(AdvertiseKeys {
        federation,
        round,
        device,
        share_key: PublicKey::from([0; 32]),
        mask_key: PublicKey::from([0; 32]),
        self_mask_commitment: [0; 32],
        signature: Signature::from_bytes(&[0; 64]),
    }))?;
    let shares = json(ClientMessage::EncryptedShares(EncryptedShares {
        federation,
        round,
        sender: device,
        shares: (0..neighbours)
            .map(|_| ShareForRecipient {
                recipient: device,
                ciphertext: vec![0; SEALED_SHARE_LEN],
            })
            .collect(),
        commitments: {
            // t = a strict majority of the neighbours (the default).
            let points = Commitments(vec![CommittedPoint([0; 32]); neighbours / 2 + 1]);
            SharingCommitments {
                mask_scalar: points.clone(),
                self_mask: points,
            }
        },
    }))?;
    let unmask = json(ClientMessage::UnmaskResponse(UnmaskResponse {
        federation,
        round,
        sender: device,
        self_mask_shares: (0..neighbours)
            .map(|_| RevealedShare {
                owner: device,
                value: Scalar::ZERO,
            })
            .collect(),
        mask_key_shares: Vec::new(),
    }))?;
    Some(ClientBytes {
        advertise,
        shares,
        upload: MaskedUpload::encoded_len(vector_len),
        consistency,
        unmask,
        consistency_received,
        plain_f32: 4 * vector_len,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn a_million_parameters_cost_under_1_1x_plain() {
        let b = client_bytes_per_round(
            FederationId::from_bytes([0; 16]),
            RoundId(42),
            1_000_000,
            16,
            1000,
        )
        .unwrap();
        assert_eq!(b.upload, 4_000_068);
        assert_eq!(b.plain_f32, 4_000_000);
        assert!(b.ratio() < 1.1, "{b:?}");
        assert!(b.ratio() < 1.01, "{b:?}");
    }

    #[test]
    fn sizes_match_real_messages_of_the_same_shape() {
        let fed = FederationId::from_bytes([9; 16]);
        let b = client_bytes_per_round(fed, RoundId(7), 10, 3, 4).unwrap();
        let real = ClientMessage::UnmaskResponse(UnmaskResponse {
            federation: fed,
            round: RoundId(7),
            sender: DeviceId::from_bytes([0xfe; 32]),
            self_mask_shares: vec![
                RevealedShare {
                    owner: DeviceId::from_bytes([3; 32]),
                    value: Scalar::from(99u64),
                },
                RevealedShare {
                    owner: DeviceId::from_bytes([4; 32]),
                    value: -Scalar::ONE,
                },
                RevealedShare {
                    owner: DeviceId::from_bytes([5; 32]),
                    value: Scalar::from(1u64 << 40),
                },
            ],
            mask_key_shares: Vec::new(),
        });
        assert_eq!(real.to_json().unwrap().len(), b.unmask);
        let ClientMessage::UnmaskResponse(mut split) = real else {
            unreachable!()
        };
        let last = split.self_mask_shares.pop().unwrap();
        split.mask_key_shares.push(last);
        assert_eq!(
            ClientMessage::UnmaskResponse(split)
                .to_json()
                .unwrap()
                .len(),
            b.unmask - 1
        );
    }
}
