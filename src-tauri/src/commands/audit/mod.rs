//! The Audit screen: where an adapter came from (items -> run -> adapter,
//! the lineage hash recomputed and compared with the file's, as
//! `hearth lineage ADAPTER` shows), where a photo tagger came from (photos
//! -> run -> tagger, its head file hashed again, as `hearth photos
//! lineage` shows) and whether every federation's
//! transparency log still verifies from what this device stored (as
//! `hearth audit` checks). Both are reads; nothing here changes the
//! library or touches the network.

pub mod commands;
#[cfg(test)]
mod tests;
