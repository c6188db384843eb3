//! Any bytes as a region blob and as a pointer: a typed error or a model that validates, and a
//! decoded model re-encodes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prewarm_shared::artifact::{ModelPointer, RegionModel};

fuzz_target!(|data: &[u8]| {
    if let Ok(model) = RegionModel::from_artifact(data) {
        assert!(model.validate().is_ok());
        let _ = model.to_artifact(prewarm_shared::UnixSeconds(0));
    }
    if let Ok(pointer) = ModelPointer::from_artifact(data) {
        assert!(pointer.validate().is_ok());
    }
});
