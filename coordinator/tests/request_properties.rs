//! The short, always-run version of the `requests` fuzz target: arbitrary bytes and
//! well-formed-but-hostile messages into every handler (see `ibsweep_coordinator::harness`).

use ibsweep_coordinator::harness::drive;
use ibsweep_proto::v1::{self as pb};
use proptest::prelude::*;
use prost::Message;

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        drive(&data);
    }

    #[test]
    fn hostile_histogram_chunks_never_panic(
        epoch in 0u32..4,
        layer in 0u32..4,
        piece in 0u32..4,
        pieces in 0u32..4,
        bin_size in prop_oneof![Just(0.67), any::<f64>()],
        split in prop_oneof![Just(pb::Split::Test as i32), Just(pb::Split::Train as i32), any::<i32>()],
        histogram in proptest::collection::vec(any::<u8>(), 0..256),
        layer_name in prop_oneof![Just("conv1".to_string()), Just("softmax".to_string()), ".{0,8}"],
    ) {
        let measurement = pb::Measurement { epoch, layer, bin_size, split, layer_name, ..Default::default() };
        let chunk = pb::HistogramChunk { measurement: Some(measurement), piece, pieces, histogram, ..Default::default() };
        let mut data = vec![8u8];
        data.extend(chunk.encode_to_vec());
        drive(&data);
    }

    #[test]
    fn hostile_checkpoints_never_panic(
        epoch in 0u32..4,
        size in prop_oneof![0u64..64, any::<u64>()],
        data in proptest::collection::vec(any::<u8>(), 0..64),
        sha256 in prop_oneof![".{0,70}", "[0-9a-f]{64}"],
        reason in ".{0,400}",
    ) {
        let piece = pb::UploadCheckpointPiece {
            claim: None,
            info: Some(pb::CheckpointInfo { epoch, size, sha256 }),
            data,
        };
        let mut upload = vec![12u8];
        upload.extend(piece.encode_to_vec());
        drive(&upload);
        for kind in [13u8, 15] {
            drive(&[kind]);
        }
        let mut discard = vec![14u8];
        discard.extend(pb::DiscardCheckpointRequest { claim: None, reason }.encode_to_vec());
        drive(&discard);
    }

    #[test]
    fn hostile_grids_and_endings_never_panic(text in ".{0,300}", reason in ".{0,2000}", release in any::<bool>()) {
        let mut submit = vec![0u8];
        submit.extend(pb::SubmitRequest { grid_yaml: text, file_name: "p.yaml".into() }.encode_to_vec());
        drive(&submit);
        let mut fail = vec![10u8];
        fail.extend(pb::FailRequest { reason, release, ..Default::default() }.encode_to_vec());
        drive(&fail);
    }
}
