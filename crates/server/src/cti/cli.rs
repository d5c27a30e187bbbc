//! `fiche cti token add|list|revoke`: the tokens phone systems post with.

use anyhow::Context;
use clap::Subcommand;
use fiche_store::Store;
use rand::RngCore;

/// CTI webhook commands.
#[derive(Debug, Subcommand)]
pub enum CtiCommand {
    /// Manage the tokens of `/api/v1/cti/{token}`, one per phone system.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

/// Token commands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token for NAME (e.g. the PBX's name) and print it, once.
    Add {
        /// Letters, digits, `-`, `_`, `.`; at most 64.
        name: String,
    },
    /// List tokens (names and dates; tokens themselves are not stored).
    List,
    /// Revoke the token NAME: the phone system is refused within seconds.
    Revoke {
        /// The token's name.
        name: String,
    },
}

/// Runs a CTI command on `store`.
pub async fn run(store: &Store, command: CtiCommand) -> anyhow::Result<()> {
    let CtiCommand::Token { command } = command;
    match command {
        TokenCommand::Add { name } => {
            let mut bytes = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            let token = hex::encode(bytes);
            let stored = store
                .add_cti_token(&name, &super::token_hash(&token))
                .await
                .with_context(|| format!("adding CTI token {name:?}"))?;
            eprintln!(
                "jeton CTI « {} » créé ; il ne sera plus affiché / CTI token {:?} created; it will not be shown again:",
                stored.name, stored.name
            );
            println!("{token}");
        }
        TokenCommand::List => {
            for token in store.list_cti_tokens().await? {
                let state = match token.revoked_at {
                    Some(at) => format!("revoked {}", at.to_rfc3339()),
                    None => "active".to_owned(),
                };
                let used = token.last_used_at.map_or_else(
                    || "never used".to_owned(),
                    |t| format!("last used {}", t.to_rfc3339()),
                );
                println!(
                    "{}\t{state}\tcreated {}\t{used}",
                    token.name,
                    token.created_at.to_rfc3339()
                );
            }
        }
        TokenCommand::Revoke { name } => {
            let token = store
                .revoke_cti_token(&name)
                .await
                .with_context(|| format!("revoking CTI token {name:?}"))?;
            println!("jeton CTI « {} » révoqué / CTI token revoked", token.name);
        }
    }
    Ok(())
}
