//! Bázico's Cart and Checkout Validation Function (README.md beside Cargo.toml).
//!
//! A WASI command module: Shopify runs the export named in shopify.extension.toml
//! (`cart_validations_generate_run`, a function taking and returning nothing), which reads the
//! input query's result as JSON from stdin and writes a `CartValidationsGenerateRunResult` as JSON
//! to stdout; logs go to stderr. `_start` (main) does the same, so `wasmtime run` works too.

mod cart_validations_generate_run;
mod input;
mod message;
mod stock;

use std::io::{Read, Write};

/// Read stdin, write the result to stdout; the exit code (0: written, 1: unreadable input).
fn run_stdio() -> i32 {
    let mut raw = Vec::new();
    if let Err(error) = std::io::stdin().read_to_end(&mut raw) {
        eprintln!("bazico: cannot read the input: {error}");
        return 1;
    }
    match cart_validations_generate_run::run(&raw) {
        Ok(output) => {
            let mut stdout = std::io::stdout().lock();
            match stdout.write_all(&output).and_then(|_| stdout.flush()) {
                Ok(()) => 0,
                Err(error) => {
                    eprintln!("bazico: cannot write the output: {error}");
                    1
                }
            }
        }
        // Not the input query's shape at all: a failed run, which Shopify records, and whose
        // outcome for the buyer is the merchant's "block on failure" setting (README.md).
        Err(error) => {
            eprintln!("bazico: unreadable input: {error}");
            1
        }
    }
}

/// The export `shopify.extension.toml` names for the `cart.validations.generate.run` target.
#[no_mangle]
pub extern "C" fn cart_validations_generate_run() {
    let code = run_stdio();
    if code != 0 {
        std::process::exit(code);
    }
}

fn main() {
    let code = run_stdio();
    if code != 0 {
        std::process::exit(code);
    }
}
