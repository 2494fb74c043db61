//! Runs the crash workload against an engine directory from a given step, printing
//! `ack <step>` after each acknowledged step, until it is killed.
//!
//! Usage: `crash_writer <data-dir> <seed> <first-step>`

use std::io::Write;

use proxima_e2e::crash::{self, CrashOp};
use proxima_server::engine::{Engine, EngineError};

fn main() -> Result<(), EngineError> {
    let args: Vec<String> = std::env::args().collect();
    let (dir, seed, first): (&str, u64, u64) = match args.as_slice() {
        [_, dir, seed, first] => (dir, seed.parse().unwrap_or(1), first.parse().unwrap_or(0)),
        _ => {
            eprintln!("usage: crash_writer <data-dir> <seed> <first-step>");
            std::process::exit(2);
        }
    };
    let engine = Engine::open(crash::engine_config(dir.as_ref()))?;
    let collection = match engine.collection(crash::COLLECTION) {
        Ok(c) => c,
        Err(_) => engine.create_collection(crash::schema())?,
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "ready");
    let _ = out.flush();
    for step in first.. {
        match crash::op_at(seed, step) {
            CrashOp::Upsert(ids) => {
                let vectors: Vec<f32> =
                    ids.iter().flat_map(|&id| crash::vector(id, step)).collect();
                collection.insert(&vectors, Some(&ids))?;
            }
            CrashOp::Delete(ids) => {
                collection.delete(&ids)?;
            }
            CrashOp::Flush => collection.flush()?,
            CrashOp::Compact => collection.compact()?,
        }
        let _ = writeln!(out, "ack {step}");
        let _ = out.flush();
    }
    Ok(())
}
