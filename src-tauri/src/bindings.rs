//! The front end's TypeScript types, generated from the Rust types the
//! commands take and return, so the two sides cannot drift apart.
//!
//! `ui/src/api/bindings.ts` is checked in; the test below regenerates it in
//! memory and fails when the file is stale (run it with
//! `HEARTH_WRITE_BINDINGS=1` to rewrite the file). Every type reachable from
//! [`ROOTS`] is declared once, in name order. 64-bit integers become
//! `number`: serde_json writes them as plain JSON numbers, which `JSON.parse`
//! reads as numbers, never `bigint` (ids and byte counts stay far below
//! 2^53).

use std::any::TypeId;
use std::collections::{BTreeMap, HashMap};

use ts_rs::{Config, TS, TypeVisitor};

/// Where the generated file lives, relative to the app crate.
pub const BINDINGS_PATH: &str = "../ui/src/api/bindings.ts";

/// The front end's tests answer `request_defaults` with this file, written
/// from [`RequestDefaults::default`] and checked like `bindings.ts`, so they
/// see the library's real defaults.
///
/// [`RequestDefaults::default`]: crate::commands::personalize::models::RequestDefaults
pub const DEFAULTS_FIXTURE_PATH: &str = "../ui/tests/request-defaults.json";

const HEADER: &str = "\
// Generated from the Rust types by src-tauri/src/bindings.rs: do not edit.
// Regenerate with `HEARTH_WRITE_BINDINGS=1 cargo test -p hearth-app bindings`.
";

/// Why the declarations could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum BindingsError {
    /// Two different Rust types would be declared under one TypeScript name.
    #[error("two Rust types are both called {0} in TypeScript; rename one with #[ts(rename)]")]
    NameClash(String),
}

/// Collects the declaration of a type and, recursively, of every type it
/// mentions.
struct Collector {
    config: Config,
    seen: HashMap<TypeId, String>,
    names: HashMap<String, TypeId>,
    declarations: BTreeMap<String, String>,
    clash: Option<String>,
}

impl Collector {
    fn new() -> Self {
        Collector {
            config: Config::new().with_large_int("number"),
            seen: HashMap::new(),
            names: HashMap::new(),
            declarations: BTreeMap::new(),
            clash: None,
        }
    }

    fn add<T: TS + 'static + ?Sized>(&mut self) {
        let id = TypeId::of::<T::WithoutGenerics>();
        if self.seen.contains_key(&id) {
            return;
        }
        let name = T::ident(&self.config);
        if let Some(other) = self.names.insert(name.clone(), id)
            && other != id
        {
            self.clash.get_or_insert(name.clone());
        }
        self.seen.insert(id, name.clone());
        let mut declaration = T::docs().unwrap_or_default();
        declaration.push_str("export ");
        declaration.push_str(&T::decl(&self.config));
        self.declarations.insert(name, declaration);
        T::visit_dependencies(self);
        T::visit_generics(self);
    }
}

impl TypeVisitor for Collector {
    fn visit<T: TS + 'static + ?Sized>(&mut self) {
        // Primitives, `Vec`, `Option` and the like have no declaration of
        // their own (their items are visited through them).
        if T::output_path().is_some() {
            self.add::<T>();
        }
    }
}

/// The types the commands take and return (everything they reach is
/// declared too).
fn roots(collector: &mut Collector) {
    use crate::commands::ask::models::AskHistory;
    use crate::commands::federation::models::FederationOverview;
    use crate::commands::library::models::{ImportSummary, ItemQuery, LibraryInfo};
    use crate::commands::personalize::models::{ModelChoice, RequestDefaults, RunView};
    use crate::commands::try_it::models::{GenerateEvent, PhotoTags, SimilarPhoto};
    use crate::error::{ErrorBody, ErrorKind};
    use crate::jobs::JobEvent;
    use crate::state::{JobInfo, JobKind};
    use hearth_personalize::ask::{AskAnswer, AskTrainingRequest, Correction};
    use hearth_personalize::federation::{
        AuditOutcome, FederatedRoundRequest, JoinFederationRequest, MembershipStatus,
        ParticipationSummary, UploadRecord,
    };
    use hearth_personalize::generate::GenerateRequest;
    use hearth_personalize::lineage::{AdapterLineage, TaggerLineage};
    use hearth_personalize::photos::{EmbedSummary, PhotoTrainingRequest, TaggerSummary};
    use hearth_personalize::{RunSummary, TextTrainingRequest};
    use hearth_store::{Adapter, Item, LabelSummary, Membership, Run};

    collector.add::<ErrorBody>();
    collector.add::<ErrorKind>();
    collector.add::<JobEvent<()>>();
    collector.add::<JobInfo>();
    collector.add::<JobKind>();
    collector.add::<crate::commands::jobs::commands::AppPlatform>();
    collector.add::<Item>();
    collector.add::<ItemQuery>();
    collector.add::<LibraryInfo>();
    collector.add::<LabelSummary>();
    collector.add::<ImportSummary>();
    collector.add::<TextTrainingRequest>();
    collector.add::<PhotoTrainingRequest>();
    collector.add::<ModelChoice>();
    collector.add::<hearth_ml::registry::Installed>();
    collector.add::<RequestDefaults>();
    collector.add::<Run>();
    collector.add::<RunView>();
    collector.add::<Adapter>();
    collector.add::<RunSummary>();
    collector.add::<EmbedSummary>();
    collector.add::<TaggerSummary>();
    collector.add::<GenerateRequest>();
    collector.add::<GenerateEvent>();
    collector.add::<PhotoTags>();
    collector.add::<SimilarPhoto>();
    collector.add::<FederationOverview>();
    collector.add::<MembershipStatus>();
    collector.add::<Membership>();
    collector.add::<JoinFederationRequest>();
    collector.add::<FederatedRoundRequest>();
    collector.add::<UploadRecord>();
    collector.add::<ParticipationSummary>();
    collector.add::<AuditOutcome>();
    collector.add::<AdapterLineage>();
    collector.add::<TaggerLineage>();
    collector.add::<AskAnswer>();
    collector.add::<Correction>();
    collector.add::<AskHistory>();
    collector.add::<AskTrainingRequest>();
}

/// The whole `bindings.ts`.
pub fn generate() -> Result<String, BindingsError> {
    let mut collector = Collector::new();
    roots(&mut collector);
    if let Some(name) = collector.clash {
        return Err(BindingsError::NameClash(name));
    }
    let mut out = String::from(HEADER);
    for declaration in collector.declarations.values() {
        out.push('\n');
        out.push_str(declaration);
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// Compares `generated` with the checked-in file at `relative`, or
    /// rewrites the file under `HEARTH_WRITE_BINDINGS`.
    fn check_generated(relative: &str, generated: &str) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
        if std::env::var_os("HEARTH_WRITE_BINDINGS").is_some() {
            std::fs::write(&path, generated).expect("write the generated file");
            return;
        }
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in == generated,
            "{} is stale: the Rust types or defaults changed. Regenerate it with \
             `HEARTH_WRITE_BINDINGS=1 cargo test -p hearth-app bindings` and commit it.",
            path.display()
        );
    }

    #[test]
    fn bindings_ts_is_generated_from_the_rust_types() {
        check_generated(BINDINGS_PATH, &generate().expect("bindings"));
    }

    #[test]
    fn the_request_defaults_fixture_is_the_library_defaults() {
        let defaults = crate::commands::personalize::models::RequestDefaults::default();
        let mut json = serde_json::to_string_pretty(&defaults).expect("json");
        json.push('\n');
        check_generated(DEFAULTS_FIXTURE_PATH, &json);
    }

    #[test]
    fn large_integers_are_numbers_and_every_error_is_kind_and_message() {
        let generated = generate().expect("bindings");
        assert!(!generated.contains("bigint"), "{generated}");
        assert!(
            generated.contains("export type AppError = {"),
            "{generated}"
        );
        assert!(generated.contains("kind: ErrorKind"), "{generated}");
        // One declaration per name.
        let mut names: Vec<&str> = generated
            .lines()
            .filter_map(|line| line.strip_prefix("export type "))
            .filter_map(|rest| rest.split([' ', '<']).next())
            .collect();
        let all = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all, "{generated}");
    }
}
