//! Vendor quirks as data: a table of rules matched against the service root's `Vendor` and
//! `Product` (and the system's `Manufacturer`), each switching on behaviours the client
//! already has. Adding a vendor is a table row, not a code branch.

/// Behaviours a BMC may need. The default is what the Redfish specification says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quirks {
    /// Send `If-Match: <@odata.etag>` with a PATCH of the system (BMCs that refuse a PATCH
    /// without it answer 428 Precondition Required).
    pub patch_needs_etag: bool,
    /// Set `BootSourceOverrideMode` in a PATCH of its own before the target: some BMCs
    /// reject both in one request.
    pub boot_mode_separate_patch: bool,
    /// Look for virtual media under the system's managers before the system itself.
    pub vmedia_on_manager_first: bool,
    /// Send only `Image` in `InsertMedia` (some BMCs reject `Inserted`/`WriteProtected`).
    pub insert_media_image_only: bool,
    /// Use basic auth even when the service offers sessions.
    pub avoid_sessions: bool,
}

/// One row: when `pattern` (case-insensitive) occurs in the vendor, product or
/// manufacturer, `quirks` apply.
#[derive(Debug, Clone, Copy)]
pub struct QuirkRule {
    pub pattern: &'static str,
    pub quirks: Quirks,
    pub why: &'static str,
}

const NONE: Quirks = Quirks {
    patch_needs_etag: false,
    boot_mode_separate_patch: false,
    vmedia_on_manager_first: false,
    insert_media_image_only: false,
    avoid_sessions: false,
};

/// The known rules; several may match, their quirks add up.
pub const RULES: &[QuirkRule] = &[
    QuirkRule {
        pattern: "HPE",
        quirks: Quirks {
            patch_needs_etag: true,
            ..NONE
        },
        why: "iLO 5 refuses a PATCH of ComputerSystem without If-Match (428)",
    },
    QuirkRule {
        pattern: "iLO",
        quirks: Quirks {
            patch_needs_etag: true,
            ..NONE
        },
        why: "iLO 5 refuses a PATCH of ComputerSystem without If-Match (428)",
    },
    QuirkRule {
        pattern: "Dell",
        quirks: Quirks {
            vmedia_on_manager_first: true,
            boot_mode_separate_patch: true,
            ..NONE
        },
        why: "iDRAC lists virtual media under its Manager, and rejects a boot mode change \
              together with an override target",
    },
    QuirkRule {
        pattern: "Supermicro",
        quirks: Quirks {
            insert_media_image_only: true,
            ..NONE
        },
        why: "some Supermicro BMCs answer 400 to InsertMedia with Inserted/WriteProtected",
    },
];

impl Quirks {
    /// The quirks of a service whose identifying strings are `names` (vendor, product,
    /// manufacturer; missing ones skipped).
    pub fn for_names<'a>(names: impl IntoIterator<Item = Option<&'a str>> + Clone) -> Quirks {
        let mut q = Quirks::default();
        for rule in RULES {
            let pat = rule.pattern.to_ascii_lowercase();
            let hit = names
                .clone()
                .into_iter()
                .flatten()
                .any(|n| n.to_ascii_lowercase().contains(&pat));
            if hit {
                q = q.union(rule.quirks);
            }
        }
        q
    }

    fn union(self, o: Quirks) -> Quirks {
        Quirks {
            patch_needs_etag: self.patch_needs_etag || o.patch_needs_etag,
            boot_mode_separate_patch: self.boot_mode_separate_patch || o.boot_mode_separate_patch,
            vmedia_on_manager_first: self.vmedia_on_manager_first || o.vmedia_on_manager_first,
            insert_media_image_only: self.insert_media_image_only || o.insert_media_image_only,
            avoid_sessions: self.avoid_sessions || o.avoid_sessions,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_case_insensitively_and_add_up() {
        assert_eq!(
            Quirks::for_names([None, Some("Sushy Emulator")]),
            Quirks::default()
        );
        let hpe = Quirks::for_names([Some("HPE"), Some("ProLiant DL360 Gen10")]);
        assert!(hpe.patch_needs_etag && !hpe.vmedia_on_manager_first);
        let dell = Quirks::for_names([Some("dell inc."), None]);
        assert!(dell.vmedia_on_manager_first && dell.boot_mode_separate_patch);
        let both = Quirks::for_names([Some("Dell"), Some("iLO bridge")]);
        assert!(both.patch_needs_etag && both.vmedia_on_manager_first);
        for r in RULES {
            assert!(!r.why.is_empty() && !r.pattern.is_empty());
        }
    }
}
