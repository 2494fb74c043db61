//! Aliases: create, switch, delete, lookups through them, clashes with collection names,
//! drops refused while aliases point to a collection, persistence across reopen, and
//! switches racing creates and drops.

use super::*;

fn two(engine: &Engine) {
    for (name, id) in [("v1", 1u64), ("v2", 2)] {
        let c = engine
            .create_collection(schema(name, 2, IndexSpec::Flat, 1))
            .unwrap();
        c.insert(&[id as f32, 0.0], Some(&[id])).unwrap();
    }
}

#[test]
fn an_alias_resolves_switches_and_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    two(&engine);
    assert!(matches!(
        engine.collection("docs"),
        Err(EngineError::CollectionNotFound { .. })
    ));
    assert_eq!(engine.set_alias("docs", "v1").unwrap(), None);
    assert_eq!(engine.collection("docs").unwrap().name(), "v1");
    assert_eq!(
        engine.collection("docs").unwrap().get(1).unwrap(),
        [1.0, 0.0]
    );
    assert_eq!(engine.alias("docs").unwrap(), "v1");
    // A switch answers the collection it pointed to; lookups follow at once.
    assert_eq!(
        engine.set_alias("docs", "v2").unwrap().as_deref(),
        Some("v1")
    );
    let c = engine.collection("docs").unwrap();
    assert_eq!(
        (c.name(), c.get(2).unwrap()),
        ("v2".to_string(), vec![2.0, 0.0])
    );
    assert_eq!(engine.aliases(), [("docs".to_string(), "v2".to_string())]);
    // Collections are still found by their own names, and listed without aliases.
    assert_eq!(engine.collection("v1").unwrap().name(), "v1");
    assert_eq!(engine.list(), ["v1", "v2"]);
    assert_eq!(engine.delete_alias("docs").unwrap(), "v2");
    assert!(matches!(
        engine.delete_alias("docs"),
        Err(EngineError::AliasNotFound { .. })
    ));
    assert!(matches!(
        engine.alias("docs"),
        Err(EngineError::AliasNotFound { .. })
    ));
    assert!(matches!(
        engine.collection("docs"),
        Err(EngineError::CollectionNotFound { .. })
    ));
    assert!(engine.collection("v2").is_ok());
}

#[test]
fn alias_and_collection_names_never_clash() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    two(&engine);
    // An alias may not take a collection's name, nor point to a collection that is not
    // there (an alias is not one), nor have an invalid name.
    let e = engine.set_alias("v1", "v2").unwrap_err();
    assert!(matches!(e, EngineError::NameIsCollection { .. }), "{e}");
    assert_eq!(
        (e.code(), e.kind()),
        ("name_is_collection", ErrorKind::Conflict)
    );
    let e = engine.set_alias("v1", "v1").unwrap_err();
    assert!(matches!(e, EngineError::NameIsCollection { .. }), "{e}");
    let e = engine.set_alias("docs", "nope").unwrap_err();
    assert!(matches!(e, EngineError::CollectionNotFound { .. }), "{e}");
    let e = engine.set_alias("x", "x").unwrap_err();
    assert!(matches!(e, EngineError::CollectionNotFound { .. }), "{e}");
    engine.set_alias("docs", "v1").unwrap();
    let e = engine.set_alias("other", "docs").unwrap_err();
    assert!(matches!(e, EngineError::CollectionNotFound { .. }), "{e}");
    for bad in ["", "../evil", "a b", &"x".repeat(65)] {
        assert!(
            matches!(
                engine.set_alias(bad, "v1"),
                Err(EngineError::InvalidName { .. })
            ),
            "{bad:?}"
        );
    }
    // A collection may not take an alias's name.
    let Err(e) = engine.create_collection(schema("docs", 2, IndexSpec::Flat, 1)) else {
        panic!("a collection was created with an alias's name");
    };
    assert!(matches!(e, EngineError::NameIsAlias { .. }), "{e}");
    assert_eq!((e.code(), e.kind()), ("name_is_alias", ErrorKind::Conflict));
    assert!(e.to_string().contains("v1"), "{e}");
    // Once the alias is gone the name is free for a collection.
    engine.delete_alias("docs").unwrap();
    engine
        .create_collection(schema("docs", 2, IndexSpec::Flat, 1))
        .unwrap();
    assert_eq!(engine.collection("docs").unwrap().name(), "docs");
}

#[test]
fn a_collection_with_aliases_is_not_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    two(&engine);
    engine.set_alias("docs", "v1").unwrap();
    engine.set_alias("latest", "v1").unwrap();
    let e = engine.drop_collection("v1").unwrap_err();
    assert_eq!(
        (e.code(), e.kind()),
        ("collection_has_aliases", ErrorKind::Conflict)
    );
    assert!(
        matches!(&e, EngineError::CollectionHasAliases { name, aliases } if name == "v1" && aliases == &["docs", "latest"]),
        "{e}"
    );
    // Nor through an alias: that would drop what the alias points to.
    let e = engine.drop_collection("docs").unwrap_err();
    assert!(
        matches!(&e, EngineError::CollectionHasAliases { name, .. } if name == "v1"),
        "{e}"
    );
    assert_eq!(engine.collection("v1").unwrap().get(1).unwrap(), [1.0, 0.0]);
    // Switched away, the old collection drops; the alias still works.
    engine.set_alias("docs", "v2").unwrap();
    engine.delete_alias("latest").unwrap();
    engine.drop_collection("v1").unwrap();
    assert_eq!(engine.collection("docs").unwrap().name(), "v2");
    assert!(matches!(
        engine.set_alias("docs", "v1"),
        Err(EngineError::CollectionNotFound { .. })
    ));
}

#[test]
fn aliases_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = Engine::open(config(dir.path())).unwrap();
        two(&engine);
        engine.set_alias("docs", "v1").unwrap();
        engine.set_alias("docs", "v2").unwrap();
        engine.set_alias("old", "v1").unwrap();
        engine.set_alias("gone", "v1").unwrap();
        engine.delete_alias("gone").unwrap();
        engine.close();
    }
    // A write cut short leaves its temporary file: the map is the last complete one.
    std::fs::write(dir.path().join("aliases.tmp"), b"{\"trunc").unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    assert_eq!(
        engine.aliases(),
        [
            ("docs".to_string(), "v2".to_string()),
            ("old".to_string(), "v1".to_string())
        ]
    );
    assert_eq!(
        engine.collection("docs").unwrap().get(2).unwrap(),
        [2.0, 0.0]
    );
    assert!(!dir.path().join("aliases.tmp").exists());
    assert!(dir.path().join(ALIASES_FILE).exists());
    // A damaged file fails the open rather than losing every alias silently.
    engine.close();
    drop(engine);
    std::fs::write(dir.path().join(ALIASES_FILE), b"{not json").unwrap();
    assert!(matches!(
        Engine::open(config(dir.path())),
        Err(EngineError::Corrupt { .. })
    ));
}

/// Switches, creates and drops of the names involved, from many threads: every lookup of the
/// alias finds one of its targets, no collection is ever dropped while an alias points to it,
/// and an alias and a collection never share a name.
#[test]
fn switches_race_creates_and_drops_linearisably() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    two(&engine);
    engine.set_alias("docs", "v1").unwrap();
    // Pins keep v1 and v2 aliased whichever one `docs` points to.
    engine.set_alias("pin1", "v1").unwrap();
    engine.set_alias("pin2", "v2").unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        // Readers through the alias: always v1 or v2.
        for _ in 0..4 {
            s.spawn(|| {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let c = engine
                        .collection("docs")
                        .expect("the alias always resolves");
                    assert!(matches!(c.name().as_str(), "v1" | "v2"));
                }
            });
        }
        let mut workers = Vec::new();
        // Switchers between v1 and v2, and of a second alias onto `tmp`.
        for t in 0..2 {
            let engine = &engine;
            workers.push(s.spawn(move || {
                for i in 0..100 {
                    let target = if (i + t) % 2 == 0 { "v1" } else { "v2" };
                    engine.set_alias("docs", target).unwrap();
                    match engine.set_alias("other", "tmp") {
                        Ok(_) | Err(EngineError::CollectionNotFound { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                    let _ = engine.delete_alias("other");
                }
            }));
        }
        // Creates and drops of `tmp` (which `other` points to at times) and attempts to
        // create `docs` and drop `v1`/`v2`, which must all be refused.
        workers.push(s.spawn(|| {
            for _ in 0..60 {
                match engine.create_collection(schema("tmp", 2, IndexSpec::Flat, 1)) {
                    Ok(_) | Err(EngineError::CollectionExists { .. }) => {}
                    Err(e) => panic!("{e}"),
                }
                match engine.drop_collection("tmp") {
                    Ok(()) | Err(EngineError::CollectionHasAliases { .. }) => {}
                    Err(e) => panic!("{e}"),
                }
                assert!(matches!(
                    engine.create_collection(schema("docs", 2, IndexSpec::Flat, 1)),
                    Err(EngineError::NameIsAlias { .. })
                ));
                for name in ["v1", "v2"] {
                    match engine.drop_collection(name) {
                        Err(EngineError::CollectionHasAliases { .. }) => {}
                        Ok(()) => panic!("{name} was dropped while an alias pointed to it"),
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        }));
        for w in workers {
            w.join().unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    // Every alias points to a collection that exists.
    for (alias, target) in engine.aliases() {
        assert!(engine.collection(&target).is_ok(), "{alias} → {target}");
        assert!(engine.collection(&alias).is_ok());
    }
}
