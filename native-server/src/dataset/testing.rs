//! Datasets for tests and benchmarks, built on first use and cached under the target directory.

use std::path::PathBuf;
use std::sync::Mutex;

use super::{build_text, Dataset, TextBuild, TextSource};

/// Held-out queries of a [`debian_subset`] (the 30 built-in questions come on top).
pub const SUBSET_HELD_OUT: usize = 200;

/// Where [`debian_subset`] caches its datasets: `$PROXIMA_TEST_DATASETS`, else
/// `<cargo target dir>/test-datasets` (found from the running executable), else the system
/// temporary directory.
pub fn test_datasets_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PROXIMA_TEST_DATASETS").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let target = std::env::current_exe().ok().and_then(|exe| {
        exe.ancestors()
            .skip(1)
            .find(|dir| dir.join("CACHEDIR.TAG").is_file())
            .map(PathBuf::from)
    });
    target
        .unwrap_or_else(|| std::env::temp_dir().join("proxima"))
        .join("test-datasets")
}

/// Builds (first time) or opens the Debian subset of `n` base vectors cached under the target
/// dir (`target/test-datasets/debian-<n>`); used by tests.
///
/// The base is a seeded sample of `n` package descriptions; the queries are
/// [`SUBSET_HELD_OUT`] held-out descriptions and the built-in questions; the ground truth is
/// the exact cosine top-100. A smaller subset's base is contained in a larger one's, and all
/// subsets share their queries. The first build embeds about `n + 230` texts (about 150 per
/// second on 2 cores in the dev profile).
///
/// # Panics
/// When the dataset can neither be opened nor built, e.g. without the embedding model
/// (`scripts/setup.sh native` installs it) or without `apt-cache`: tests that need real data
/// fail loudly instead of passing on nothing.
pub fn debian_subset(n: usize) -> Dataset {
    static BUILDING: Mutex<()> = Mutex::new(());
    // Tests run in threads: one builds, the others wait and then find it cached.
    let _guard = BUILDING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let name = format!("debian-{n}");
    let mut request = TextBuild::new(&name, TextSource::DebianPackages);
    request.limit = Some(n);
    request.held_out = SUBSET_HELD_OUT;
    request.out = test_datasets_dir().join(&name);
    let outcome = build_text(&request)
        .unwrap_or_else(|e| panic!("debian_subset({n}) in {}: {e}", request.out.display()));
    Dataset::open(&outcome.dir)
        .unwrap_or_else(|e| panic!("debian_subset({n}): opening {}: {e}", outcome.dir.display()))
}
