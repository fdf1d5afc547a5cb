//! Step planning (CONTRACT.md §8), pure: which clean or deploy steps run and in what order,
//! from the conductor's own steps, the agent's and the user's. No node, no I/O: the steps
//! engine (`steps.rs`) gathers the inputs and stores the result.

use ferrite_proto::steps::{Step, StepKind, StepsResult};
use serde_json::{Map, Value};

use crate::drivers::ConductorStep;
use crate::state::State;

/// Which run of steps: cleaning, deploying or servicing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Clean,
    Deploy,
    /// Servicing an active node (1.87): the user's steps, run by the conductor.
    Service,
}

impl Kind {
    /// The run a working or waiting state belongs to.
    pub fn of(state: State) -> Kind {
        match state {
            State::Cleaning | State::CleanWait | State::CleanHold => Kind::Clean,
            State::Servicing | State::ServiceWait | State::ServiceHold => Kind::Service,
            _ => Kind::Deploy,
        }
    }
    /// `clean`, `deploy` or `service`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Clean => "clean",
            Kind::Deploy => "deploy",
            Kind::Service => "service",
        }
    }
    /// `Clean`, `Deploy` or `Service`, to start a message.
    pub fn title(self) -> &'static str {
        match self {
            Kind::Clean => "Clean",
            Kind::Deploy => "Deploy",
            Kind::Service => "Service",
        }
    }
    /// The agent's commands for this run; `None` for servicing, which ferrite-agent does
    /// not offer (IPA's `service.*` commands): service steps run on the conductor.
    pub fn proto(self) -> Option<StepKind> {
        match self {
            Kind::Clean => Some(StepKind::Clean),
            Kind::Deploy => Some(StepKind::Deploy),
            Kind::Service => None,
        }
    }
}

/// Ironic's reserved step names (`conductor/steps.py`): the conductor runs them itself,
/// on any interface, in every kind of run.
pub const RESERVED_STEPS: &[&str] = &["power_on", "power_off", "reboot", "hold"];

/// A service step that cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "service step {step} is not offered: ferrite-agent has no service steps, so a node whose \
     deploy interface uses the agent can run only the conductor's (power_on, power_off, \
     reboot, hold, on any interface)"
)]
pub struct ServiceNotOffered {
    step: String,
}

/// Servicing runs exactly the user's steps, in the user's order (as a manual clean). The
/// conductor's reserved steps run anywhere; any other step needs an agent that offers
/// it, and ferrite-agent offers none, so with an agent deploy such a step is refused.
/// Without an agent (`fake`) the other steps are taken as given and do nothing, as
/// conductor-less deploy steps do.
pub fn service(user: Vec<Step>, uses_agent: bool) -> Result<Vec<Step>, ServiceNotOffered> {
    if uses_agent {
        if let Some(s) = user
            .iter()
            .find(|s| !RESERVED_STEPS.contains(&s.step.as_str()))
        {
            return Err(ServiceNotOffered { step: s.name() });
        }
    }
    Ok(user)
}

/// The keys a user step may have.
const STEP_KEYS: &[&str] = &["interface", "step", "args", "priority"];
/// The interfaces a user step may name.
const INTERFACES: &[&str] = &[
    "deploy",
    "power",
    "management",
    "boot",
    "bios",
    "raid",
    "firmware",
    "inspect",
];

/// A user-given step (`clean_steps`/`deploy_steps` of a provision request) that is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}[{index}]: {why}")]
pub struct InvalidStep {
    /// `clean_steps` or `deploy_steps`.
    pub what: String,
    pub index: usize,
    pub why: String,
}

/// Validates user-given steps (`clean_steps`/`deploy_steps`); `what` names the list in
/// messages.
pub fn parse_user_steps(list: &[Value], what: &str) -> Result<Vec<Step>, InvalidStep> {
    let bad = |index: usize, why: String| InvalidStep {
        what: what.into(),
        index,
        why,
    };
    let mut out = vec![];
    for (i, v) in list.iter().enumerate() {
        let o = v
            .as_object()
            .ok_or_else(|| bad(i, "each step must be an object".into()))?;
        if let Some(k) = o.keys().find(|k| !STEP_KEYS.contains(&k.as_str())) {
            return Err(bad(
                i,
                format!("unknown key {k:?}; allowed: interface, step, args, priority"),
            ));
        }
        let interface = o
            .get("interface")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(i, "\"interface\" (a string) is required".into()))?;
        if !INTERFACES.contains(&interface) {
            return Err(bad(
                i,
                format!(
                    "interface {interface:?} is unknown; use one of {}",
                    INTERFACES.join(", ")
                ),
            ));
        }
        let step = o
            .get("step")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad(i, "\"step\" (a non-empty string) is required".into()))?;
        let args = match o.get("args") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(a)) => a.clone(),
            Some(_) => return Err(bad(i, "\"args\" must be an object".into())),
        };
        let priority = match o.get("priority") {
            None => 0,
            Some(p) => p
                .as_i64()
                .filter(|p| (0..=1000).contains(p))
                .ok_or_else(|| bad(i, "\"priority\" must be an integer 0..1000".into()))?
                as i32,
        };
        out.push(Step {
            interface: interface.into(),
            step: step.into(),
            priority,
            args,
            abortable: false,
            reboot_requested: false,
        });
    }
    Ok(out)
}

/// Highest priority first; steps of equal priority keep their order (a stable sort).
fn sort(steps: &mut [Step]) {
    steps.sort_by_key(|s| std::cmp::Reverse(s.priority));
}

/// The agent's steps of `kind` from its `get_*_steps` result
/// (`{"clean_steps": {"Manager": [steps]}}`), one per step name: when several managers
/// offer a step, the highest priority wins (IPA's rule), the first listed on a tie.
pub fn agent_steps(result: &StepsResult, kind: Kind) -> Vec<Step> {
    let mut out: Vec<Step> = vec![];
    let Some(proto) = kind.proto() else {
        return out;
    };
    for list in result.steps(proto).into_iter().flat_map(|m| m.values()) {
        for step in list {
            match out.iter_mut().find(|o| o.same(step)) {
                Some(o) if o.priority < step.priority => *o = step.clone(),
                Some(_) => {}
                None => out.push(step.clone()),
            }
        }
    }
    out
}

/// A clean step the user asked for that neither the conductor nor the agent offers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("clean step {step} is not offered; offered: {offered}")]
pub struct NotOffered {
    step: String,
    offered: String,
}

/// A manual clean runs exactly the user's steps, in the user's order, whatever their
/// priority; each must be offered by the conductor (`conductor`, plus `deploy.hold`) or
/// the agent. Without an agent there is nothing to check them against.
pub fn manual_clean(
    user: Vec<Step>,
    conductor: Vec<Step>,
    agent: &[Step],
    uses_agent: bool,
) -> Result<Vec<Step>, NotOffered> {
    if !uses_agent {
        return Ok(user);
    }
    let mut offered = conductor;
    offered.extend(agent.iter().cloned());
    offered.push(ConductorStep::Hold.with_priority(0));
    if let Some(s) = user.iter().find(|s| !offered.iter().any(|o| o.same(s))) {
        let names: Vec<String> = offered.iter().map(Step::name).collect();
        return Err(NotOffered {
            step: s.name(),
            offered: names.join(", "),
        });
    }
    Ok(user)
}

/// An automated clean: the conductor's clean steps, then the agent's that the conductor
/// does not have, by priority; priority 0 disables a step. `erase_priority` (the node's
/// `erase_devices_priority`, else the conductor's) replaces the agent's priority of
/// `erase_devices`, as Ironic's `[deploy]erase_devices_priority` does.
pub fn automated_clean(
    conductor: Vec<Step>,
    agent: &[Step],
    erase_priority: Option<i32>,
) -> Vec<Step> {
    let mut steps = conductor;
    for s in agent {
        let mut s = s.clone();
        if s.step == "erase_devices" {
            if let Some(p) = erase_priority {
                s.priority = p;
            }
        }
        if !steps.iter().any(|o| o.same(&s)) {
            steps.push(s);
        }
    }
    steps.retain(|s| s.priority > 0);
    sort(&mut steps);
    steps
}

/// A deploy before the agent runs: the conductor's deploy steps, a user step replacing
/// the conductor's of the same name (priority and arguments; priority 0 removes it) or
/// being added; by priority. The agent's steps join later ([`merge_agent_steps`]).
pub fn deploy(conductor: Vec<Step>, user: &[Step]) -> Vec<Step> {
    let mut steps = conductor;
    for u in user {
        match steps.iter_mut().find(|s| s.same(u)) {
            Some(s) => *s = u.clone(),
            None => steps.push(u.clone()),
        }
    }
    steps.retain(|s| s.priority > 0);
    sort(&mut steps);
    steps
}

/// Once the agent is up (it booted during step `index`, which is done), its steps join the
/// rest of the run: those not already planned, with a priority above 0 and below the
/// current step's (earlier ones had their turn), sorted in among the steps still to come.
/// Returns the new list; the run goes on at `index + 1`. Steps already planned (the
/// conductor's, or the user's) keep their planned priority and arguments, and a user step
/// (`user`) of the same name replaces the agent's: priority 0 keeps it out, as in Ironic.
pub fn merge_agent_steps(
    mut steps: Vec<Step>,
    index: usize,
    agent: Vec<Step>,
    user: &[Step],
) -> Vec<Step> {
    let current = steps.get(index).map(|s| s.priority).unwrap_or(i32::MAX);
    let mut rest: Vec<Step> = steps.split_off((index + 1).min(steps.len()));
    for a in agent {
        let a = user.iter().find(|u| u.same(&a)).cloned().unwrap_or(a);
        let known = steps.iter().chain(rest.iter()).any(|s| s.same(&a));
        if !known && a.priority > 0 && a.priority < current {
            rest.push(a);
        }
    }
    sort(&mut rest);
    steps.extend(rest);
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::step;
    use serde_json::json;

    fn names(steps: &[Step]) -> Vec<String> {
        steps
            .iter()
            .map(|s| format!("{}:{}", s.name(), s.priority))
            .collect()
    }

    fn conductor_deploy() -> Vec<Step> {
        crate::drivers::agent_deploy_steps()
    }

    #[test]
    fn user_steps_are_validated() {
        let ok = parse_user_steps(
            &[json!({"interface": "deploy", "step": "erase_devices_metadata"})],
            "clean_steps",
        )
        .unwrap();
        assert_eq!(ok[0].step, "erase_devices_metadata");
        assert_eq!(ok[0].priority, 0, "a user step without priority has 0");
        for (bad, why) in [
            (json!("x"), "must be an object"),
            (json!({"interface": "deploy"}), "\"step\""),
            (json!({"interface": "nope", "step": "a"}), "is unknown"),
            (
                json!({"interface": "deploy", "step": "a", "args": 1}),
                "\"args\"",
            ),
            (
                json!({"interface": "deploy", "step": "a", "bogus": 1}),
                "unknown key",
            ),
            (
                json!({"interface": "deploy", "step": "a", "priority": -1}),
                "priority",
            ),
            (
                json!({"interface": "deploy", "step": "a", "priority": 1001}),
                "priority",
            ),
        ] {
            let e = parse_user_steps(&[bad], "clean_steps")
                .unwrap_err()
                .to_string();
            assert!(e.contains(why), "{e}");
            assert!(e.starts_with("clean_steps[0]"), "{e}");
        }
        let e = parse_user_steps(
            &[
                json!({"interface": "deploy", "step": "a"}),
                json!({"interface": "deploy"}),
            ],
            "deploy_steps",
        )
        .unwrap_err();
        assert_eq!(e.index, 1);
        assert!(e.to_string().starts_with("deploy_steps[1]: "), "{e}");
    }

    #[test]
    fn agent_steps_take_the_highest_priority_per_step() {
        let r: StepsResult = serde_json::from_value(json!({"clean_steps": {
            "A": [{"interface": "deploy", "step": "erase_devices_metadata", "priority": 99}],
            "B": [{"interface": "deploy", "step": "erase_devices_metadata", "priority": 50},
                  {"interface": "deploy", "step": "erase_devices", "priority": 10}]
        }}))
        .unwrap();
        let s = agent_steps(&r, Kind::Clean);
        assert_eq!(
            names(&s),
            [
                "deploy.erase_devices_metadata:99",
                "deploy.erase_devices:10"
            ]
        );
        // The other kind's steps are not these.
        assert!(agent_steps(&r, Kind::Deploy).is_empty());
    }

    #[test]
    fn agent_steps_tie_keeps_the_first_manager() {
        let r: StepsResult = serde_json::from_value(json!({"deploy_steps": {
            "A": [{"interface": "deploy", "step": "x", "priority": 5, "args": {"from": "A"}}],
            "B": [{"interface": "deploy", "step": "x", "priority": 5, "args": {"from": "B"}},
                  {"interface": "raid", "step": "x", "priority": 7}]
        }}))
        .unwrap();
        let s = agent_steps(&r, Kind::Deploy);
        assert_eq!(
            names(&s),
            ["deploy.x:5", "raid.x:7"],
            "same step name, other interface"
        );
        assert_eq!(s[0].args["from"], "A");
    }

    #[test]
    fn automated_clean_orders_by_priority_and_drops_disabled_steps() {
        let agent = [
            step("deploy", "erase_devices", 10),
            step("deploy", "erase_devices_metadata", 99),
            step("raid", "delete_configuration", 0),
            step("bios", "apply", 10),
        ];
        let steps = automated_clean(vec![], &agent, None);
        assert_eq!(
            names(&steps),
            [
                "deploy.erase_devices_metadata:99",
                "deploy.erase_devices:10",
                "bios.apply:10"
            ],
            "ties keep the agent's order; priority 0 never runs"
        );
    }

    #[test]
    fn automated_clean_erase_priority_overrides_the_agent() {
        let agent = [
            step("deploy", "erase_devices", 10),
            step("deploy", "erase_devices_metadata", 99),
        ];
        let off = automated_clean(vec![], &agent, Some(0));
        assert_eq!(names(&off), ["deploy.erase_devices_metadata:99"]);
        let first = automated_clean(vec![], &agent, Some(100));
        assert_eq!(
            names(&first),
            [
                "deploy.erase_devices:100",
                "deploy.erase_devices_metadata:99"
            ]
        );
    }

    #[test]
    fn automated_clean_keeps_the_conductors_step_over_the_agents() {
        let conductor = vec![step("deploy", "erase_devices_metadata", 20)];
        let agent = [
            step("deploy", "erase_devices_metadata", 99),
            step("deploy", "erase_devices", 10),
        ];
        let steps = automated_clean(conductor, &agent, None);
        assert_eq!(
            names(&steps),
            [
                "deploy.erase_devices_metadata:20",
                "deploy.erase_devices:10"
            ]
        );
    }

    #[test]
    fn manual_clean_runs_the_users_steps_in_their_order() {
        let agent = [
            step("deploy", "erase_devices", 10),
            step("deploy", "erase_devices_metadata", 99),
        ];
        let user = vec![
            step("deploy", "erase_devices", 0),
            step("deploy", "hold", 0),
            step("deploy", "erase_devices_metadata", 5),
        ];
        let steps = manual_clean(user.clone(), vec![], &agent, true).unwrap();
        assert_eq!(steps, user, "user order and priorities, even 0");
    }

    #[test]
    fn manual_clean_refuses_an_unknown_step() {
        let agent = [step("deploy", "erase_devices", 10)];
        let user = vec![step("raid", "erase_devices", 0)];
        let e = manual_clean(user, vec![], &agent, true).unwrap_err();
        assert_eq!(
            e.to_string(),
            "clean step raid.erase_devices is not offered; offered: deploy.erase_devices, \
             deploy.hold"
        );
        // Without an agent the conductor cannot know: the steps are taken as given.
        let user = vec![step("deploy", "anything", 0)];
        assert_eq!(
            manual_clean(user.clone(), vec![], &[], false).unwrap(),
            user
        );
    }

    #[test]
    fn service_runs_the_users_steps_and_only_reserved_ones_with_an_agent() {
        let user = vec![
            step("deploy", "hold", 0),
            step("power", "reboot", 0),
            step("bios", "apply_configuration", 0),
        ];
        // Without an agent (fake deploy) the steps are taken as given, in the user's order.
        assert_eq!(service(user.clone(), false).unwrap(), user);
        let e = service(user.clone(), true).unwrap_err();
        assert!(e
            .to_string()
            .starts_with("service step bios.apply_configuration is not offered"));
        let reserved = user[..2].to_vec();
        assert_eq!(service(reserved.clone(), true).unwrap(), reserved);
    }

    #[test]
    fn deploy_plan_is_the_conductors_steps_by_priority() {
        let steps = deploy(conductor_deploy(), &[]);
        assert_eq!(
            names(&steps),
            [
                "deploy.deploy:100",
                "deploy.write_image:80",
                "deploy.prepare_instance_boot:60",
                "deploy.tear_down_agent:40",
                "deploy.boot_instance:20"
            ]
        );
    }

    #[test]
    fn deploy_plan_user_steps_override_add_and_disable() {
        let mut args = Map::new();
        args.insert("x".into(), json!(1));
        let user = [
            // Override: moves before write_image, with arguments.
            Step {
                args,
                ..step("deploy", "prepare_instance_boot", 90)
            },
            // Disable.
            step("deploy", "tear_down_agent", 0),
            // Add (an agent step, asked for by the user), tied with boot_instance.
            step("deploy", "install_bootloader", 20),
            // Add with priority 0: never runs.
            step("bios", "apply", 0),
            // Added with the same priority as a conductor step: after it.
            step("deploy", "hold", 80),
        ];
        let steps = deploy(conductor_deploy(), &user);
        assert_eq!(
            names(&steps),
            [
                "deploy.deploy:100",
                "deploy.prepare_instance_boot:90",
                "deploy.write_image:80",
                "deploy.hold:80",
                "deploy.boot_instance:20",
                "deploy.install_bootloader:20",
            ]
        );
        assert_eq!(steps[1].args["x"], 1);
    }

    #[test]
    fn agent_steps_join_below_the_current_step() {
        let user = [];
        let planned = deploy(conductor_deploy(), &user);
        let agent = vec![
            // Above deploy.deploy (100): its turn is over.
            step("deploy", "early", 150),
            // Already planned: the conductor's version stays.
            step("deploy", "write_image", 85),
            // Between write_image and prepare_instance_boot.
            step("deploy", "install_bootloader", 70),
            // Disabled by the agent.
            step("deploy", "off", 0),
            // Tied with tear_down_agent: after it.
            step("raid", "apply_configuration", 40),
        ];
        let steps = merge_agent_steps(planned, 0, agent, &user);
        assert_eq!(
            names(&steps),
            [
                "deploy.deploy:100",
                "deploy.write_image:80",
                "deploy.install_bootloader:70",
                "deploy.prepare_instance_boot:60",
                "deploy.tear_down_agent:40",
                "raid.apply_configuration:40",
                "deploy.boot_instance:20",
            ]
        );
    }

    #[test]
    fn agent_steps_keep_the_users_planned_version() {
        let user = [step("deploy", "install_bootloader", 30)];
        let planned = deploy(conductor_deploy(), &user);
        let agent = vec![step("deploy", "install_bootloader", 70)];
        let steps = merge_agent_steps(planned, 0, agent, &user);
        assert_eq!(
            names(&steps),
            [
                "deploy.deploy:100",
                "deploy.write_image:80",
                "deploy.prepare_instance_boot:60",
                "deploy.tear_down_agent:40",
                "deploy.install_bootloader:30",
                "deploy.boot_instance:20",
            ]
        );
    }

    #[test]
    fn a_user_step_of_priority_0_keeps_the_agents_step_out() {
        let user = [
            step("deploy", "write_image", 0),
            step("raid", "apply_configuration", 0),
        ];
        let planned = deploy(conductor_deploy(), &user);
        assert!(!names(&planned).contains(&"deploy.write_image:80".to_string()));
        // The agent offers both (the Ferrite agent offers write_image at 80).
        let agent = vec![
            step("deploy", "write_image", 80),
            step("raid", "apply_configuration", 50),
            step("deploy", "install_bootloader", 70),
        ];
        let steps = merge_agent_steps(planned, 0, agent, &user);
        assert_eq!(
            names(&steps),
            [
                "deploy.deploy:100",
                "deploy.install_bootloader:70",
                "deploy.prepare_instance_boot:60",
                "deploy.tear_down_agent:40",
                "deploy.boot_instance:20",
            ]
        );
    }

    #[test]
    fn agent_steps_merge_past_the_end_is_harmless() {
        // The index past the list (nothing current): every new enabled agent step is added.
        let steps = merge_agent_steps(vec![], 3, vec![step("deploy", "a", 1)], &[]);
        assert_eq!(names(&steps), ["deploy.a:1"]);
    }
}
