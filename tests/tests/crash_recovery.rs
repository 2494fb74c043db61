//! Durability under `kill -9`: a writer process is killed with SIGKILL at random moments, many
//! times; after each kill the data directory is recovered and checked against a model built
//! from the writes the writer saw acknowledged. Every acknowledged write must be there with
//! the right vector, and no deleted id may come back. The one write in flight at the kill may
//! or may not have landed, but never partly.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use proxima_core::{ConsistencyLevel, SearchParams};
use proxima_e2e::crash::{self, COLLECTION, DIM, ID_RANGE};
use proxima_server::engine::{Engine, EngineError};

/// Reads the state of the recovered collection: every live id with its vector.
fn recovered_state(dir: &std::path::Path) -> HashMap<u64, Vec<f32>> {
    let engine = Engine::open(crash::engine_config(dir)).expect("recovery must succeed");
    let Ok(c) = engine.collection(COLLECTION) else {
        return HashMap::new();
    };
    let mut state = HashMap::new();
    for id in 0..ID_RANGE {
        match c.get(id) {
            Ok(v) => {
                state.insert(id, v);
            }
            Err(EngineError::IdNotFound { .. }) => {}
            Err(e) => panic!("get({id}) failed after recovery: {e}"),
        }
    }
    let count = c.count() as usize;
    assert_eq!(count, state.len(), "count must be exact after recovery");
    if count > 0 {
        let r = c
            .search(
                &[0.0; DIM],
                &SearchParams::new(count),
                ConsistencyLevel::Strong,
                None,
            )
            .unwrap();
        assert_eq!(r.hits[0].len(), count);
        let mut seen = std::collections::HashSet::new();
        for h in &r.hits[0] {
            assert!(seen.insert(h.id), "search returned id {} twice", h.id);
            let Some(v) = state.get(&h.id) else {
                panic!("search returned id {} that get() says is gone", h.id);
            };
            // L2 from the origin is the squared norm: a stale copy of the id (an older
            // vector left live somewhere) would score differently.
            let norm: f32 = v.iter().map(|x| x * x).sum();
            assert!(
                (h.score - norm).abs() <= 1e-3 * norm.max(1.0),
                "id {} scored {} but its vector's squared norm is {norm}",
                h.id,
                h.score
            );
        }
    }
    engine.close();
    state
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let writer = env!("CARGO_BIN_EXE_crash_writer");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(7);
    println!("crash workload seed {seed}");
    let mut rng = seed | 1;
    let mut next_rand = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut model: HashMap<u64, Vec<f32>> = HashMap::new();
    let mut next_step = 0u64;
    let rounds = 40;
    let started = Instant::now();
    for round in 0..rounds {
        let mut child = Command::new(writer)
            .arg(dir.path())
            .arg(seed.to_string())
            .arg(next_step.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn crash_writer");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        // Wait for the writer to open the engine (recovery), then let it run a random while.
        let _ = rx.recv_timeout(Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(20 + next_rand() % 400));
        child.kill().expect("SIGKILL the writer");
        let _ = child.wait();
        reader.join().unwrap();
        let mut last_ack: Option<u64> = None;
        while let Ok(line) = rx.try_recv() {
            if let Some(step) = line
                .strip_prefix("ack ")
                .and_then(|s| s.parse::<u64>().ok())
            {
                assert_eq!(
                    step,
                    last_ack.map_or(next_step, |a| a + 1),
                    "acks arrive in order"
                );
                last_ack = Some(step);
            }
        }
        // Everything acknowledged goes into the model.
        let first_unacked = last_ack.map_or(next_step, |a| a + 1);
        for step in next_step..first_unacked {
            crash::apply(&mut model, &crash::op_at(seed, step), step);
        }
        // The step in flight at the kill may have landed or not, but whole.
        let mut with_inflight = model.clone();
        crash::apply(
            &mut with_inflight,
            &crash::op_at(seed, first_unacked),
            first_unacked,
        );
        let state = recovered_state(dir.path());
        if state == model {
            next_step = first_unacked;
        } else if state == with_inflight {
            model = with_inflight;
            next_step = first_unacked + 1;
        } else {
            let missing: Vec<_> = model
                .keys()
                .filter(|id| !state.contains_key(id))
                .take(10)
                .collect();
            let resurrected: Vec<_> = state
                .keys()
                .filter(|id| !model.contains_key(id))
                .take(10)
                .collect();
            panic!(
                "round {round} (seed {seed}): recovered state matches neither model; \
                 missing acknowledged ids {missing:?}, ids that should not exist {resurrected:?}"
            );
        }
        println!(
            "round {round}: {} steps acknowledged so far, {} live ids",
            next_step,
            model.len()
        );
    }
    assert!(
        next_step > rounds as u64,
        "the writer made too little progress to test anything"
    );
    println!("{rounds} kills in {:.1} s", started.elapsed().as_secs_f64());
}
