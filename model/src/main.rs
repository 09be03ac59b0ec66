//! Runs one exhaustive check of the checkout protocol model and prints the
//! state counts and every counterexample (exit 1 if a safety or liveness
//! property fails). Bounds and variant as `key=value` arguments over the default
//! bound ([`Config::DEFAULT`]):
//!
//! ```text
//! cargo run -p model -- orders=2 checkouts=2 crashes=1 duplicates=1 sweeps=1 \
//!     retention=never|quiet|completion sweeper=heals|lost fault=none|ack-before-commit|...
//! ```
//! `make model` runs the larger bound.

use model::{check, Config, Fault, Retention, Sweeper};

fn main() {
    let mut config = Config::DEFAULT;
    for arg in std::env::args().skip(1) {
        if let Err(e) = set(&mut config, &arg) {
            eprintln!("{arg}: {e}");
            std::process::exit(2);
        }
    }
    println!("checking {config:?}");
    let outcome = check(config, None);
    println!("{}", outcome.summary());
    for (name, _) in &outcome.discoveries {
        println!("\nfound: {name}\n{}", outcome.trace(name));
    }
    if !outcome.violations().is_empty() {
        std::process::exit(1);
    }
}

fn set(c: &mut Config, arg: &str) -> Result<(), String> {
    let (key, value) = arg.split_once('=').ok_or("expected key=value")?;
    let num = || value.parse::<u8>().map_err(|e| e.to_string());
    match key {
        "orders" => c.orders = num()?.max(1),
        "checkouts" => c.checkouts = num()?.max(1),
        "crashes" => c.crashes = num()?,
        "duplicates" => c.duplicates = num()?,
        "sweeps" => c.sweeps = num()?,
        "stock" => c.stock = i64::from(num()?),
        "credit" => c.credit = i64::from(num()?),
        "retention" => {
            c.retention = match value {
                "never" => Retention::Never,
                "quiet" => Retention::WhenQuiet,
                "completion" => Retention::FromCompletion,
                _ => return Err("never, quiet or completion".into()),
            }
        }
        "sweeper" => {
            c.sweeper = match value {
                "heals" => Sweeper::Heals,
                "lost" => Sweeper::LostPublishesOnly,
                _ => return Err("heals or lost".into()),
            }
        }
        "fault" => {
            c.fault = match value {
                "none" => Fault::None,
                "ack-before-commit" => Fault::AckBeforeCommit,
                "missing-ledger-check" => Fault::MissingLedgerCheck,
                "fail-before-compensation" => Fault::FailBeforeCompensation,
                "purge-running-ledger" => Fault::PurgeRunningLedger,
                "ignore-checkout-in-flight" => Fault::IgnoreCheckoutInFlight,
                "answer-before-finalise" => Fault::AnswerBeforeFinalise,
                "newest-queued-first" => Fault::NewestQueuedFirst,
                "no-resend" => Fault::NoResendOnRedelivery,
                "retain-from-acceptance" => Fault::RetainFromAcceptance,
                _ => return Err("unknown fault".into()),
            }
        }
        _ => return Err("unknown key".into()),
    }
    Ok(())
}
