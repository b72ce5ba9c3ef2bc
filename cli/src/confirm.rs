//! Asking before destructive work. Without a terminal there is nobody to
//! ask, so only `--yes` lets such work go ahead.

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

pub fn confirm(question: &Question, yes: bool) -> Result<()> {
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
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    let answer = answer.trim();
    let approved = if *tier == Tier::Production {
        answer == *env
    } else {
        matches!(answer, "y" | "Y" | "yes")
    };
    if !approved {
        bail!("{action} of {env} cancelled; nothing was changed");
    }
    Ok(())
}
