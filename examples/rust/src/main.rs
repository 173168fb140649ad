//! corehead from Rust: generate, then the last prompt token's attention.
//!
//!     cargo run --release -- MODEL "PROMPT" MAX_TOKENS
//! stdout: "version V", "generated ID ...", "shape L H P N", "attention l h v_0 ...".
mod corehead;

use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: {} MODEL PROMPT MAX_TOKENS", args[0]);
        std::process::exit(2);
    }
    println!("version {}", corehead::version());
    let mut engine = corehead::Engine::load(&args[1], 1024).unwrap_or_else(|e| {
        eprintln!("load failed (status {}): {}", e.status, e.message);
        std::process::exit(1);
    });
    let ids = engine
        .generate(&args[2], args[3].parse().expect("MAX_TOKENS"), |_, piece| {
            std::io::stderr().write_all(piece).ok();
            true
        })
        .unwrap_or_else(|e| panic!("generate: {e:?}"));
    let ids: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    println!("generated {}", ids.join(" "));
    let (shape, rows) = engine.last_token_attention(&args[2]).unwrap_or_else(|e| panic!("attention: {e:?}"));
    println!("shape {} {} {} {}", shape.n_layer, shape.n_head, shape.n_pos, shape.n_kv);
    for l in 0..shape.n_layer as usize {
        for h in 0..shape.n_head as usize {
            let base = (l * shape.n_head as usize + h) * shape.n_kv as usize;
            let row: Vec<String> = rows[base..base + shape.n_kv as usize].iter().map(|v| format!("{v:.9e}")).collect();
            println!("attention {l} {h} {}", row.join(" "));
        }
    }
}
