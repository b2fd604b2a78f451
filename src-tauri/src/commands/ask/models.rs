//! Request and response shapes of the Ask commands, and the translator
//! the app keeps loaded.

use std::sync::{Arc, Mutex, PoisonError};

use hearth_personalize::ask::Translator;
use hearth_store::{AdapterId, AskCorrection, AskRecord, Library};
use serde::Serialize;

use crate::error::Result;

pub use hearth_personalize::ask::{AskAnswer, Correction};

/// Every ask and every correction, oldest first (`hearth ask history`).
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct AskHistory {
    /// The asks.
    pub asks: Vec<AskRecord>,
    /// The corrections, each naming its ask.
    pub corrections: Vec<AskCorrection>,
}

/// The translator questions are asked through: the default text model
/// with the library's newest ask adapter. Loading it takes seconds, so it
/// is loaded on the first question and kept; it is loaded again only when
/// the library's ask adapter changed (a training finished, here or in the
/// `hearth` command). Clones share one translator.
#[derive(Clone, Default)]
pub struct AskTranslator(Arc<Mutex<Option<Loaded>>>);

struct Loaded {
    translator: Translator,
    adapter: Option<AdapterId>,
}

impl std::fmt::Debug for AskTranslator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AskTranslator").finish_non_exhaustive()
    }
}

impl AskTranslator {
    /// Runs `work` with the translator for `library`, loading it first if
    /// it is not loaded yet or the library's ask adapter is not the one it
    /// uses. Questions are translated one at a time.
    pub fn with<T>(
        &self,
        library: &mut Library,
        work: impl FnOnce(&mut Library, &Translator) -> Result<T>,
    ) -> Result<T> {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let current = match slot.take() {
            Some(loaded)
                if hearth_personalize::ask::ask_adapter(library, &loaded.translator)?
                    == loaded.adapter =>
            {
                loaded
            }
            // Not loaded, or stale: the old model is dropped before the
            // new one loads.
            _ => {
                let device = hearth_ml::DeviceChoice::Auto.open()?;
                let (translator, adapter) =
                    hearth_personalize::ask::library_translator(library, None, &device)?;
                Loaded {
                    translator,
                    adapter,
                }
            }
        };
        let result = work(library, &current.translator);
        *slot = Some(current);
        result
    }

    /// `None` until a translator is loaded; then the ask adapter it uses.
    pub fn loaded(&self) -> Option<Option<AdapterId>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|loaded| loaded.adapter)
    }
}
