//! Asking before destructive work. Without a terminal there is nobody to
//! ask, so only `--yes` lets such work go ahead. Ctrl-C at the prompt
//! cancels (the process's interrupt handler is already installed by then, so
//! the prompt listens for it itself).

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{bail, Result};

use crate::config::Tier;

/// What the user is asked to approve.
pub struct Question<'a> {
    /// "apply", "destroy"...
    pub action: &'a str,
    pub env: &'a str,
    pub tier: Tier,
    /// One line on what will happen, e.g. the plan summary.
    pub detail: String,
}

pub async fn confirm(question: &Question<'_>, yes: bool) -> Result<()> {
    if yes {
        return Ok(());
    }
    let Question {
        action,
        env,
        tier,
        detail,
    } = question;
    if !std::io::stdin().is_terminal() {
        bail!("refusing to {action} {env} without --yes: there is no terminal to confirm on\n  plan: {detail}");
    }
    let mut stderr = std::io::stderr();
    if *tier == Tier::Production {
        write!(
            stderr,
            "{action} {env}: {detail}\nThis is production. Type its name ({env}) to continue: "
        )?;
    } else {
        write!(stderr, "{action} {env}: {detail}\nContinue? [y/N] ")?;
    }
    stderr.flush()?;
    let read = tokio::task::spawn_blocking(|| {
        let mut answer = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut answer)
            .map(|_| answer)
    });
    let answer = tokio::select! {
        answer = read => answer??,
        _ = tokio::signal::ctrl_c() => {
            eprintln!();
            String::new()
        }
    };
    let approved = approves(*tier, env, &answer);
    if !approved {
        bail!("{action} of {env} cancelled; nothing was changed");
    }
    Ok(())
}

/// Whether a typed answer approves: production wants its name, others a yes.
fn approves(tier: Tier, env: &str, answer: &str) -> bool {
    let answer = answer.trim();
    if tier == Tier::Production {
        answer == env
    } else {
        matches!(answer, "y" | "Y" | "yes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_wants_its_name_and_nothing_else() {
        assert!(approves(Tier::Production, "production", "production\n"));
        for answer in ["y", "yes", "Production", "prod", ""] {
            assert!(
                !approves(Tier::Production, "production", answer),
                "{answer}"
            );
        }
    }

    #[test]
    fn others_want_a_yes() {
        for answer in ["y\n", "Y", "yes"] {
            assert!(approves(Tier::Staging, "staging", answer), "{answer}");
        }
        for answer in ["", "n", "no", "staging", "yess"] {
            assert!(!approves(Tier::Staging, "staging", answer), "{answer}");
        }
    }
}
