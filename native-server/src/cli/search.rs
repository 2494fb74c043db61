//! `proxima search`: queries a running server with a vector or a text.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use proxima_core::ConsistencyLevel;
use serde_json::json;

use super::import::ServerArgs;
use crate::embed::{default_model_dir, Embedder, REQUIRED_FILES};

#[derive(Debug, Args, Clone)]
#[command(group(clap::ArgGroup::new("query").required(true).args(["vector", "text"])))]
pub struct SearchArgs {
    /// Collection to search.
    #[arg(long)]
    pub collection: String,
    /// The query vector: comma- or space-separated numbers.
    #[arg(long, allow_hyphen_values = true)]
    pub vector: Option<String>,
    /// A text, embedded with the built-in model: locally when the model is installed here,
    /// else by the server's /v1/embed.
    #[arg(long)]
    pub text: Option<String>,
    /// Neighbours to return.
    #[arg(short, long, default_value_t = 10)]
    pub k: usize,
    /// IVF lists to probe.
    #[arg(long)]
    pub nprobe: Option<usize>,
    /// HNSW search breadth (efSearch).
    #[arg(long)]
    pub ef: Option<usize>,
    /// strong, bounded, session or eventually.
    #[arg(long, default_value = "bounded")]
    pub consistency: ConsistencyLevel,
    /// Print the server's JSON answer.
    #[arg(long)]
    pub json: bool,
    /// Embed with the server's /v1/embed even when the model is installed here.
    #[arg(long)]
    pub remote_embed: bool,
    /// Directory of the model files [default: ~/.cache/proxima/models/all-MiniLM-L6-v2].
    #[arg(long, env = "PROXIMA_MODEL_DIR")]
    pub model_dir: Option<PathBuf>,
    #[command(flatten)]
    pub server: ServerArgs,
}

fn parse_vector(s: &str) -> anyhow::Result<Vec<f32>> {
    s.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<f32>()
                .with_context(|| format!("{t:?} in --vector is not a number"))
        })
        .collect()
}

pub fn run(args: SearchArgs) -> anyhow::Result<()> {
    let client = args.server.client();
    let vector = match (&args.vector, &args.text) {
        (Some(v), _) => parse_vector(v)?,
        (None, Some(text)) => {
            let dir = args.model_dir.clone().unwrap_or_else(default_model_dir);
            let local = !args.remote_embed && REQUIRED_FILES.iter().all(|f| dir.join(f).exists());
            if local {
                Embedder::load(&dir)?
                    .embed(&[text])?
                    .pop()
                    .context("the embedder returned no vector")?
            } else {
                let r = client
                    .send("POST", "/v1/embed", &json!({ "texts": [text] }))
                    .context("embedding the text with the server's /v1/embed")?;
                serde_json::from_value(r["vectors"][0].clone())
                    .context("/v1/embed returned no vector")?
            }
        }
        (None, None) => anyhow::bail!("give --vector or --text"),
    };
    let mut params = serde_json::Map::new();
    if let Some(n) = args.nprobe {
        params.insert("nprobe".into(), json!(n));
    }
    if let Some(ef) = args.ef {
        params.insert("ef".into(), json!(ef));
    }
    let body = json!({
        "vectors": [vector],
        "k": args.k,
        "params": params,
        "consistency": args.consistency,
    });
    let r = client.send(
        "POST",
        &format!("/v1/collections/{}/search", args.collection),
        &body,
    )?;
    if args.json {
        println!("{r}");
        return Ok(());
    }
    let hits = r["results"][0].as_array().cloned().unwrap_or_default();
    println!("{:>4}  {:>20}  {:>12}", "rank", "id", "score");
    for (i, hit) in hits.iter().enumerate() {
        println!(
            "{:>4}  {:>20}  {:>12.6}",
            i + 1,
            hit["id"].as_u64().unwrap_or(0),
            hit["score"].as_f64().unwrap_or(f64::NAN)
        );
    }
    eprintln!(
        "{} hits, seq {}, {:.2} ms on the server",
        hits.len(),
        r["seq"],
        r["took_ms"].as_f64().unwrap_or(0.0)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_parse_with_commas_or_spaces() {
        assert_eq!(parse_vector("1, -2.5 3").unwrap(), vec![1.0, -2.5, 3.0]);
        assert!(parse_vector("1,x").is_err());
    }
}
