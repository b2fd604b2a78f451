//! The Try commands' logic: generation (the library's, as `hearth
//! generate` runs it), and the photo calls of `hearth photos tag|similar`
//! and `hearth label accept|reject`.

use hearth_ml::DeviceChoice;
use hearth_personalize::{generate, photos};
use hearth_progress::CancelToken;
use hearth_store::{ItemId, Verdict};

use super::models::{GenerateEvent, GenerateRequest, PhotoTags, SimilarPhoto};
use crate::error::Result;
use crate::jobs::EventSink;
use crate::state::LibraryLocation;

/// Runs the passes a request asks for ([`hearth_personalize::generate`]),
/// streaming into `sink`.
pub fn generate_text(
    location: &LibraryLocation,
    request: &GenerateRequest,
    sink: &dyn EventSink<GenerateEvent>,
    cancel: &CancelToken,
) -> Result<()> {
    request.check()?;
    let library = location.open()?;
    let device = DeviceChoice::Auto.open()?;
    generate::generate_text(
        &library,
        request,
        &device,
        &mut |event| sink.send(event.into()),
        cancel,
    )?;
    Ok(())
}

/// Tag suggestions from the active tagger: for unlabelled photos, or for
/// every photo when `all`.
pub fn suggest_tags(location: &LibraryLocation, all: bool) -> Result<Vec<PhotoTags>> {
    let library = location.open()?;
    let model = photos::active_photo_model(&library, &hearth_ml::candle::Device::Cpu)?;
    photos::suggest_tags(&library, &model.sha256, all)?
        .into_iter()
        .map(|row| {
            Ok(PhotoTags {
                item: library.item(row.item_id)?,
                suggestions: row.suggestions,
            })
        })
        .collect()
}

/// The `k` photos most like `item`.
pub fn similar(location: &LibraryLocation, item: ItemId, k: usize) -> Result<Vec<SimilarPhoto>> {
    let library = location.open()?;
    let model = photos::active_photo_model(&library, &hearth_ml::candle::Device::Cpu)?;
    photos::similar(&library, &model.sha256, item, k.clamp(1, 100))?
        .into_iter()
        .map(|(id, _, similarity)| {
            Ok(SimilarPhoto {
                item: library.item(id)?,
                similarity,
            })
        })
        .collect()
}

/// Records the person's verdict on a suggested label.
pub fn verdict(
    location: &LibraryLocation,
    item: ItemId,
    label: &str,
    verdict: Verdict,
) -> Result<hearth_store::Item> {
    let mut library = location.open()?;
    library.record_verdict(item, label, verdict)?;
    Ok(library.item(item)?)
}
