//! The provision state machine (CONTRACT.md §7) as one transition table. Callers send
//! [`Event`]s; only [`next`] decides the state a node moves to.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[cfg(test)]
mod tests;

/// Every provision state a node can be in, spelled as Ironic spells it on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum State {
    #[serde(rename = "enroll")]
    Enroll,
    #[serde(rename = "verifying")]
    Verifying,
    #[serde(rename = "manageable")]
    Manageable,
    #[serde(rename = "inspecting")]
    Inspecting,
    #[serde(rename = "inspect wait")]
    InspectWait,
    #[serde(rename = "inspect failed")]
    InspectFailed,
    #[serde(rename = "adopting")]
    Adopting,
    #[serde(rename = "cleaning")]
    Cleaning,
    #[serde(rename = "clean wait")]
    CleanWait,
    #[serde(rename = "clean failed")]
    CleanFailed,
    #[serde(rename = "clean hold")]
    CleanHold,
    #[serde(rename = "available")]
    Available,
    #[serde(rename = "deploying")]
    Deploying,
    #[serde(rename = "wait call-back")]
    WaitCallBack,
    #[serde(rename = "deploy failed")]
    DeployFailed,
    #[serde(rename = "deploy hold")]
    DeployHold,
    #[serde(rename = "active")]
    Active,
    #[serde(rename = "servicing")]
    Servicing,
    #[serde(rename = "service wait")]
    ServiceWait,
    #[serde(rename = "service failed")]
    ServiceFailed,
    #[serde(rename = "service hold")]
    ServiceHold,
    #[serde(rename = "rescuing")]
    Rescuing,
    #[serde(rename = "rescue wait")]
    RescueWait,
    #[serde(rename = "rescue failed")]
    RescueFailed,
    #[serde(rename = "rescue")]
    Rescue,
    #[serde(rename = "unrescuing")]
    Unrescuing,
    #[serde(rename = "unrescue failed")]
    UnrescueFailed,
    #[serde(rename = "deleting")]
    Deleting,
    #[serde(rename = "error")]
    Error,
}

pub const ALL_STATES: &[State] = &[
    State::Enroll,
    State::Verifying,
    State::Manageable,
    State::Inspecting,
    State::InspectWait,
    State::InspectFailed,
    State::Adopting,
    State::Cleaning,
    State::CleanWait,
    State::CleanFailed,
    State::CleanHold,
    State::Available,
    State::Deploying,
    State::WaitCallBack,
    State::DeployFailed,
    State::DeployHold,
    State::Active,
    State::Servicing,
    State::ServiceWait,
    State::ServiceFailed,
    State::ServiceHold,
    State::Rescuing,
    State::RescueWait,
    State::RescueFailed,
    State::Rescue,
    State::Unrescuing,
    State::UnrescueFailed,
    State::Deleting,
    State::Error,
];

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Enroll => "enroll",
            State::Verifying => "verifying",
            State::Manageable => "manageable",
            State::Inspecting => "inspecting",
            State::InspectWait => "inspect wait",
            State::InspectFailed => "inspect failed",
            State::Adopting => "adopting",
            State::Cleaning => "cleaning",
            State::CleanWait => "clean wait",
            State::CleanFailed => "clean failed",
            State::CleanHold => "clean hold",
            State::Available => "available",
            State::Deploying => "deploying",
            State::WaitCallBack => "wait call-back",
            State::DeployFailed => "deploy failed",
            State::DeployHold => "deploy hold",
            State::Active => "active",
            State::Servicing => "servicing",
            State::ServiceWait => "service wait",
            State::ServiceFailed => "service failed",
            State::ServiceHold => "service hold",
            State::Rescuing => "rescuing",
            State::RescueWait => "rescue wait",
            State::RescueFailed => "rescue failed",
            State::Rescue => "rescue",
            State::Unrescuing => "unrescuing",
            State::UnrescueFailed => "unrescue failed",
            State::Deleting => "deleting",
            State::Error => "error",
        }
    }

    /// Stable states: nothing happens to the node until someone asks.
    pub fn is_stable(self) -> bool {
        matches!(
            self,
            State::Enroll
                | State::Manageable
                | State::Available
                | State::Active
                | State::Error
                | State::Rescue
        )
    }

    /// States in which the conductor waits for the agent (lookup is answered here).
    pub fn expects_agent(self) -> bool {
        matches!(
            self,
            State::InspectWait
                | State::CleanWait
                | State::WaitCallBack
                | State::Inspecting
                | State::Cleaning
                | State::Deploying
                | State::RescueWait
                | State::Rescuing
        )
    }

    /// States in which the conductor itself is working on the node.
    pub fn is_working(self) -> bool {
        matches!(
            self,
            State::Verifying
                | State::Inspecting
                | State::Adopting
                | State::Cleaning
                | State::Deploying
                | State::Servicing
                | State::Rescuing
                | State::Unrescuing
                | State::Deleting
        )
    }

    /// The failed state a working or waiting state falls into.
    pub fn failure(self) -> Option<State> {
        next(self, Event::Fail).ok()
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for State {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<State, UnknownName> {
        ALL_STATES
            .iter()
            .copied()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownName(s.to_string()))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown provision state or verb {0:?}")]
pub struct UnknownName(pub String);

/// What can happen to a node. User verbs (`manage`, `provide`, …) and internal events
/// (`done`, `wait`, `resume`, `fail`) alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    Manage,
    Provide,
    Clean,
    Inspect,
    Adopt,
    Deploy,
    Rebuild,
    Service,
    Rescue,
    Unrescue,
    Delete,
    Abort,
    Hold,
    Unhold,
    Wait,
    Resume,
    Done,
    Fail,
}

pub const ALL_EVENTS: &[Event] = &[
    Event::Manage,
    Event::Provide,
    Event::Clean,
    Event::Inspect,
    Event::Adopt,
    Event::Deploy,
    Event::Rebuild,
    Event::Service,
    Event::Rescue,
    Event::Unrescue,
    Event::Delete,
    Event::Abort,
    Event::Hold,
    Event::Unhold,
    Event::Wait,
    Event::Resume,
    Event::Done,
    Event::Fail,
];

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Manage => "manage",
            Event::Provide => "provide",
            Event::Clean => "clean",
            Event::Inspect => "inspect",
            Event::Adopt => "adopt",
            Event::Deploy => "deploy",
            Event::Rebuild => "rebuild",
            Event::Service => "service",
            Event::Rescue => "rescue",
            Event::Unrescue => "unrescue",
            Event::Delete => "delete",
            Event::Abort => "abort",
            Event::Hold => "hold",
            Event::Unhold => "unhold",
            Event::Wait => "wait",
            Event::Resume => "resume",
            Event::Done => "done",
            Event::Fail => "fail",
        }
    }

    /// Events a user may ask for through `PUT /states/provision`.
    pub fn is_user_verb(self) -> bool {
        !matches!(
            self,
            Event::Wait | Event::Resume | Event::Done | Event::Fail | Event::Hold
        )
    }

    /// The event for an API `target` (`active` means deploy, `deleted` means delete).
    pub fn from_target(target: &str) -> Option<Event> {
        Some(match target {
            "manage" => Event::Manage,
            "provide" => Event::Provide,
            "clean" => Event::Clean,
            "inspect" => Event::Inspect,
            "adopt" => Event::Adopt,
            "active" | "deploy" => Event::Deploy,
            "rebuild" => Event::Rebuild,
            "service" => Event::Service,
            "rescue" => Event::Rescue,
            "unrescue" => Event::Unrescue,
            "deleted" | "undeploy" => Event::Delete,
            "abort" => Event::Abort,
            "unhold" => Event::Unhold,
            _ => return None,
        })
    }

    /// The word an API user types for this event.
    pub fn target_word(self) -> &'static str {
        match self {
            Event::Deploy => "active",
            Event::Delete => "deleted",
            other => other.as_str(),
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

use Event as E;
use State as S;

/// The transition table of CONTRACT.md §7: (from, event, to). `done` out of `cleaning`
/// goes to `available` here; a manual clean's `done` is redirected to `manageable` by
/// [`next_with`]. `unhold` out of the hold states, servicing (`service` out of
/// `active`) and rescue (`rescue`/`unrescue`) are Ironic's additions to §7.
pub const TRANSITIONS: &[(State, Event, State)] = &[
    (S::Enroll, E::Manage, S::Verifying),
    (S::Verifying, E::Done, S::Manageable),
    (S::Verifying, E::Fail, S::Enroll),
    (S::Manageable, E::Provide, S::Cleaning),
    (S::Manageable, E::Clean, S::Cleaning),
    (S::Manageable, E::Inspect, S::Inspecting),
    (S::Manageable, E::Adopt, S::Adopting),
    (S::Adopting, E::Done, S::Active),
    (S::Adopting, E::Fail, S::Manageable),
    (S::Inspecting, E::Wait, S::InspectWait),
    (S::Inspecting, E::Done, S::Manageable),
    (S::Inspecting, E::Fail, S::InspectFailed),
    (S::InspectWait, E::Resume, S::Inspecting),
    (S::InspectWait, E::Done, S::Manageable),
    (S::InspectWait, E::Fail, S::InspectFailed),
    (S::InspectWait, E::Abort, S::InspectFailed),
    (S::InspectFailed, E::Manage, S::Manageable),
    (S::InspectFailed, E::Inspect, S::Inspecting),
    (S::Cleaning, E::Wait, S::CleanWait),
    (S::Cleaning, E::Done, S::Available),
    (S::Cleaning, E::Fail, S::CleanFailed),
    (S::Cleaning, E::Hold, S::CleanHold),
    (S::CleanWait, E::Resume, S::Cleaning),
    (S::CleanWait, E::Fail, S::CleanFailed),
    (S::CleanWait, E::Abort, S::CleanFailed),
    (S::CleanWait, E::Hold, S::CleanHold),
    (S::CleanHold, E::Unhold, S::CleanWait),
    (S::CleanHold, E::Abort, S::CleanFailed),
    (S::CleanFailed, E::Manage, S::Manageable),
    (S::Available, E::Deploy, S::Deploying),
    (S::Available, E::Manage, S::Manageable),
    (S::Deploying, E::Wait, S::WaitCallBack),
    (S::Deploying, E::Done, S::Active),
    (S::Deploying, E::Fail, S::DeployFailed),
    (S::Deploying, E::Hold, S::DeployHold),
    (S::WaitCallBack, E::Resume, S::Deploying),
    (S::WaitCallBack, E::Fail, S::DeployFailed),
    (S::WaitCallBack, E::Abort, S::DeployFailed),
    (S::WaitCallBack, E::Delete, S::Deleting),
    (S::WaitCallBack, E::Hold, S::DeployHold),
    (S::DeployHold, E::Unhold, S::WaitCallBack),
    (S::DeployHold, E::Abort, S::DeployFailed),
    (S::DeployFailed, E::Rebuild, S::Deploying),
    (S::DeployFailed, E::Deploy, S::Deploying),
    (S::DeployFailed, E::Delete, S::Deleting),
    (S::Active, E::Rebuild, S::Deploying),
    (S::Active, E::Delete, S::Deleting),
    // Servicing (1.87), as Ironic's state machine has it.
    (S::Active, E::Service, S::Servicing),
    (S::Servicing, E::Done, S::Active),
    (S::Servicing, E::Fail, S::ServiceFailed),
    (S::Servicing, E::Wait, S::ServiceWait),
    (S::Servicing, E::Hold, S::ServiceHold),
    (S::ServiceWait, E::Hold, S::ServiceHold),
    (S::ServiceWait, E::Resume, S::Servicing),
    (S::ServiceWait, E::Fail, S::ServiceFailed),
    (S::ServiceWait, E::Abort, S::ServiceFailed),
    (S::ServiceWait, E::Delete, S::Deleting),
    (S::ServiceHold, E::Service, S::Servicing),
    (S::ServiceHold, E::Unhold, S::ServiceWait),
    (S::ServiceHold, E::Fail, S::ServiceFailed),
    (S::ServiceHold, E::Abort, S::ServiceFailed),
    (S::ServiceFailed, E::Service, S::Servicing),
    (S::ServiceFailed, E::Abort, S::Active),
    (S::ServiceFailed, E::Delete, S::Deleting),
    (S::ServiceFailed, E::Rescue, S::Rescuing),
    // Rescue (1.38), as Ironic's state machine has it.
    (S::Active, E::Rescue, S::Rescuing),
    (S::Rescuing, E::Done, S::Rescue),
    (S::Rescuing, E::Wait, S::RescueWait),
    (S::Rescuing, E::Fail, S::RescueFailed),
    (S::RescueWait, E::Resume, S::Rescuing),
    (S::RescueWait, E::Fail, S::RescueFailed),
    (S::RescueWait, E::Abort, S::RescueFailed),
    (S::RescueWait, E::Delete, S::Deleting),
    (S::Rescue, E::Rescue, S::Rescuing),
    (S::Rescue, E::Unrescue, S::Unrescuing),
    (S::Rescue, E::Delete, S::Deleting),
    (S::RescueFailed, E::Rescue, S::Rescuing),
    (S::RescueFailed, E::Unrescue, S::Unrescuing),
    (S::RescueFailed, E::Delete, S::Deleting),
    (S::Unrescuing, E::Done, S::Active),
    (S::Unrescuing, E::Fail, S::UnrescueFailed),
    (S::UnrescueFailed, E::Rescue, S::Rescuing),
    (S::UnrescueFailed, E::Unrescue, S::Unrescuing),
    (S::UnrescueFailed, E::Delete, S::Deleting),
    (S::Deleting, E::Clean, S::Cleaning),
    (S::Deleting, E::Fail, S::Error),
    (S::Error, E::Rebuild, S::Deploying),
    (S::Error, E::Delete, S::Deleting),
];

/// A transition the table does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.message())]
pub struct NotAllowed {
    pub from: State,
    pub event: Event,
}

impl NotAllowed {
    fn message(&self) -> String {
        let verbs: Vec<&str> = allowed_events(self.from)
            .into_iter()
            .filter(|e| e.is_user_verb())
            .map(|e| e.target_word())
            .collect();
        let verbs = if verbs.is_empty() {
            "none (wait for the current operation to finish)".to_string()
        } else {
            verbs.join(", ")
        };
        format!(
            "The requested action \"{}\" cannot go from {} to a new state: \"{}\" is not \
             allowed in state \"{}\"; allowed verbs: {}",
            self.event.target_word(),
            self.from,
            self.event.target_word(),
            self.from,
            verbs
        )
    }
}

/// The state `event` moves a node in `from` to.
pub fn next(from: State, event: Event) -> Result<State, NotAllowed> {
    TRANSITIONS
        .iter()
        .find(|(f, e, _)| *f == from && *e == event)
        .map(|(_, _, to)| *to)
        .ok_or(NotAllowed { from, event })
}

/// Like [`next`], but a `done` out of a manual clean lands in `manageable`.
pub fn next_with(from: State, event: Event, manual_clean: bool) -> Result<State, NotAllowed> {
    let to = next(from, event)?;
    if from == State::Cleaning && event == Event::Done && manual_clean {
        return Ok(State::Manageable);
    }
    Ok(to)
}

/// Events allowed out of `from`, in table order.
pub fn allowed_events(from: State) -> Vec<Event> {
    TRANSITIONS
        .iter()
        .filter(|(f, _, _)| *f == from)
        .map(|(_, e, _)| *e)
        .collect()
}

/// The stable state a node heads for while in `state` after `event` (shown as
/// `target_provision_state`); `None` once it is stable.
pub fn target_of(to: State, event: Event, manual_clean: bool) -> Option<State> {
    match to {
        S::Verifying => Some(S::Manageable),
        S::Inspecting | S::InspectWait => Some(S::Manageable),
        S::Adopting => Some(S::Active),
        S::Cleaning | S::CleanWait | S::CleanHold => Some(if manual_clean {
            S::Manageable
        } else {
            S::Available
        }),
        S::Deploying | S::WaitCallBack | S::DeployHold => Some(S::Active),
        S::Servicing | S::ServiceWait | S::ServiceHold | S::ServiceFailed => Some(S::Active),
        S::Rescuing | S::RescueWait | S::RescueFailed => Some(S::Rescue),
        S::Unrescuing | S::UnrescueFailed => Some(S::Active),
        S::Deleting => Some(S::Available),
        _ => {
            let _ = event;
            None
        }
    }
}
