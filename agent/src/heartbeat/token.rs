//! The agent token: handed out once by the conductor, masked (`******`) on later lookups,
//! or pre-shared on the kernel command line (`ipa-agent-token`), which then always wins.
//! The first token is kept for the agent's life, as the agent API accepts only that one.

use ferrite_proto::MASKED_SECRET;

use crate::cmdline::MIN_TOKEN_LEN;

/// What happened to a token the conductor offered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenEvent {
    /// A new token is now in use.
    Adopted,
    /// Nothing changed: no token offered, `******` with one on file, the same token again,
    /// or the command-line token overrides.
    Kept,
    /// A different real token while we hold one: ignored, the first one stays (the
    /// agent API accepts only the token it was given first).
    Different,
    /// `******` but no token on file: the conductor will refuse our heartbeats until the
    /// node is rebooted into a fresh agent.
    MaskedWithoutToken,
    /// Shorter than the contract allows: ignored.
    Invalid,
}

#[derive(Debug, Clone, Default)]
pub struct TokenStore {
    token: Option<String>,
    pinned: bool,
}

impl TokenStore {
    /// `pinned`: the token from `ipa-agent-token`, never replaced.
    pub fn new(pinned: Option<String>) -> Self {
        TokenStore {
            pinned: pinned.is_some(),
            token: pinned,
        }
    }

    pub fn get(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Takes in the `config.agent_token` of a lookup or inspection answer.
    pub fn offer(&mut self, offered: Option<&str>) -> TokenEvent {
        let Some(offered) = offered.filter(|t| !t.is_empty()) else {
            return TokenEvent::Kept;
        };
        if offered == MASKED_SECRET {
            return if self.token.is_some() {
                TokenEvent::Kept
            } else {
                TokenEvent::MaskedWithoutToken
            };
        }
        if offered.len() < MIN_TOKEN_LEN {
            return TokenEvent::Invalid;
        }
        match self.token.as_deref() {
            None => {
                self.token = Some(offered.to_string());
                TokenEvent::Adopted
            }
            Some(held) if held == offered || self.pinned => TokenEvent::Kept,
            Some(_) => TokenEvent::Different,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn first_token_is_kept_through_masked_answers() {
        let mut t = TokenStore::new(None);
        assert_eq!(t.offer(Some(A)), TokenEvent::Adopted);
        assert_eq!(t.offer(Some(MASKED_SECRET)), TokenEvent::Kept);
        assert_eq!(t.offer(None), TokenEvent::Kept);
        assert_eq!(t.offer(Some(A)), TokenEvent::Kept);
        assert_eq!(t.get(), Some(A));
    }

    #[test]
    fn masked_without_a_token_is_reported() {
        let mut t = TokenStore::new(None);
        assert_eq!(t.offer(Some(MASKED_SECRET)), TokenEvent::MaskedWithoutToken);
        assert_eq!(t.get(), None);
    }

    #[test]
    fn command_line_token_wins() {
        let mut t = TokenStore::new(Some(B.into()));
        assert_eq!(t.offer(Some(A)), TokenEvent::Kept);
        assert_eq!(t.get(), Some(B));
    }

    #[test]
    fn short_tokens_are_refused() {
        let mut t = TokenStore::new(None);
        assert_eq!(t.offer(Some("short")), TokenEvent::Invalid);
        assert_eq!(t.get(), None);
    }

    #[test]
    fn the_first_real_token_stays() {
        let mut t = TokenStore::new(None);
        t.offer(Some(A));
        assert_eq!(t.offer(Some(B)), TokenEvent::Different);
        assert_eq!(t.get(), Some(A));
    }
}
