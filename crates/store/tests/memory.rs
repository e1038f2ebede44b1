//! The storage conformance suite over the in-memory reference storage.

podrun_store::storage_suite!(podrun_store::MemoryStorage::new());
