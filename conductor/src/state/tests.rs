//! Every allowed transition of the table and every disallowed (state, event) pair.

use super::*;

/// CONTRACT.md §7 written out independently of the table, as (from, event, to) words.
const CONTRACT: &[(&str, &str, &str)] = &[
    ("enroll", "manage", "verifying"),
    ("verifying", "done", "manageable"),
    ("verifying", "fail", "enroll"),
    ("manageable", "provide", "cleaning"),
    ("manageable", "clean", "cleaning"),
    ("manageable", "inspect", "inspecting"),
    ("manageable", "adopt", "adopting"),
    ("adopting", "done", "active"),
    ("adopting", "fail", "manageable"),
    ("inspecting", "wait", "inspect wait"),
    ("inspecting", "done", "manageable"),
    ("inspecting", "fail", "inspect failed"),
    ("inspect wait", "resume", "inspecting"),
    ("inspect wait", "done", "manageable"),
    ("inspect wait", "fail", "inspect failed"),
    ("inspect wait", "abort", "inspect failed"),
    ("inspect failed", "manage", "manageable"),
    ("inspect failed", "inspect", "inspecting"),
    ("cleaning", "wait", "clean wait"),
    ("cleaning", "done", "available"),
    ("cleaning", "fail", "clean failed"),
    ("cleaning", "hold", "clean hold"),
    ("clean wait", "resume", "cleaning"),
    ("clean wait", "fail", "clean failed"),
    ("clean wait", "abort", "clean failed"),
    ("clean wait", "hold", "clean hold"),
    ("clean hold", "unhold", "clean wait"),
    ("clean hold", "abort", "clean failed"),
    ("clean failed", "manage", "manageable"),
    ("available", "deploy", "deploying"),
    ("available", "manage", "manageable"),
    ("deploying", "wait", "wait call-back"),
    ("deploying", "done", "active"),
    ("deploying", "fail", "deploy failed"),
    ("deploying", "hold", "deploy hold"),
    ("wait call-back", "resume", "deploying"),
    ("wait call-back", "fail", "deploy failed"),
    ("wait call-back", "abort", "deploy failed"),
    ("wait call-back", "delete", "deleting"),
    ("wait call-back", "hold", "deploy hold"),
    ("deploy hold", "unhold", "wait call-back"),
    ("deploy hold", "abort", "deploy failed"),
    ("deploy failed", "rebuild", "deploying"),
    ("deploy failed", "deploy", "deploying"),
    ("deploy failed", "delete", "deleting"),
    ("active", "rebuild", "deploying"),
    ("active", "delete", "deleting"),
    // Servicing: Ironic's state machine (common/state_machine.py).
    ("active", "service", "servicing"),
    ("servicing", "done", "active"),
    ("servicing", "fail", "service failed"),
    ("servicing", "wait", "service wait"),
    ("servicing", "hold", "service hold"),
    ("service wait", "hold", "service hold"),
    ("service wait", "resume", "servicing"),
    ("service wait", "fail", "service failed"),
    ("service wait", "abort", "service failed"),
    ("service wait", "delete", "deleting"),
    ("service hold", "service", "servicing"),
    ("service hold", "unhold", "service wait"),
    ("service hold", "fail", "service failed"),
    ("service hold", "abort", "service failed"),
    ("service failed", "service", "servicing"),
    ("service failed", "abort", "active"),
    ("service failed", "delete", "deleting"),
    ("service failed", "rescue", "rescuing"),
    // Rescue: Ironic's state machine (common/state_machine.py).
    ("active", "rescue", "rescuing"),
    ("rescuing", "done", "rescue"),
    ("rescuing", "wait", "rescue wait"),
    ("rescuing", "fail", "rescue failed"),
    ("rescue wait", "resume", "rescuing"),
    ("rescue wait", "fail", "rescue failed"),
    ("rescue wait", "abort", "rescue failed"),
    ("rescue wait", "delete", "deleting"),
    ("rescue", "rescue", "rescuing"),
    ("rescue", "unrescue", "unrescuing"),
    ("rescue", "delete", "deleting"),
    ("rescue failed", "rescue", "rescuing"),
    ("rescue failed", "unrescue", "unrescuing"),
    ("rescue failed", "delete", "deleting"),
    ("unrescuing", "done", "active"),
    ("unrescuing", "fail", "unrescue failed"),
    ("unrescue failed", "rescue", "rescuing"),
    ("unrescue failed", "unrescue", "unrescuing"),
    ("unrescue failed", "delete", "deleting"),
    ("deleting", "clean", "cleaning"),
    ("deleting", "fail", "error"),
    ("error", "rebuild", "deploying"),
    ("error", "delete", "deleting"),
];

fn event(word: &str) -> Event {
    *ALL_EVENTS.iter().find(|e| e.as_str() == word).unwrap()
}

#[test]
fn every_contract_transition_is_allowed() {
    for (from, ev, to) in CONTRACT {
        let from: State = from.parse().unwrap();
        assert_eq!(
            next(from, event(ev)).map(|s| s.as_str()),
            Ok(*to),
            "{from} --{ev}-->"
        );
    }
    assert_eq!(TRANSITIONS.len(), CONTRACT.len());
}

#[test]
fn every_other_pair_is_refused_with_the_allowed_verbs() {
    let mut refused = 0;
    for &from in ALL_STATES {
        for &ev in ALL_EVENTS {
            let allowed = CONTRACT
                .iter()
                .any(|(f, e, _)| *f == from.as_str() && *e == ev.as_str());
            if allowed {
                continue;
            }
            let err = next(from, ev).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("cannot go from"), "{msg}");
            assert!(msg.contains(&format!("in state \"{from}\"")), "{msg}");
            for verb in allowed_events(from)
                .into_iter()
                .filter(|e| e.is_user_verb())
            {
                assert!(msg.contains(verb.target_word()), "{msg} lacks {verb}");
            }
            refused += 1;
        }
    }
    assert_eq!(
        refused,
        ALL_STATES.len() * ALL_EVENTS.len() - CONTRACT.len()
    );
}

#[test]
fn sample_refusals_read_well() {
    let msg = next(State::Available, Event::Inspect)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("\"inspect\" is not allowed in state \"available\""));
    assert!(msg.contains("allowed verbs: active, manage"), "{msg}");
    let msg = next(State::Deploying, Event::Delete)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("none (wait"), "{msg}");
}

#[test]
fn manual_clean_ends_manageable() {
    assert_eq!(
        next_with(State::Cleaning, Event::Done, true),
        Ok(State::Manageable)
    );
    assert_eq!(
        next_with(State::Cleaning, Event::Done, false),
        Ok(State::Available)
    );
}

#[test]
fn names_round_trip() {
    for &s in ALL_STATES {
        assert_eq!(s.as_str().parse::<State>().unwrap(), s);
        assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
    }
    assert!("bogus".parse::<State>().is_err());
    assert_eq!(Event::from_target("active"), Some(Event::Deploy));
    assert_eq!(Event::from_target("deleted"), Some(Event::Delete));
    assert_eq!(Event::from_target("fail"), None);
}
