//! Power changes that wait for the BMC to report the new state (bounded, configurable: slow
//! BMCs are normal), and polling many BMCs with bounded concurrency.

use std::time::Duration;

use thiserror::Error;
use tokio::time::Instant;

use crate::client::{Client, ClientConfig, ClientError};
use crate::codec::commands::{ChassisControl, PowerState};

/// What a power request should achieve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    On,
    Off,
    /// ACPI shutdown request, then wait for off.
    SoftOff,
    /// Off (waiting for it), then on.
    Reboot,
}

/// How long to wait for a change to show, and how often to look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PowerWait {
    pub timeout: Duration,
    pub interval: Duration,
}

impl Default for PowerWait {
    /// 60 s (Ironic's `power_state_change_timeout` default), checked every 500 ms.
    fn default() -> Self {
        PowerWait {
            timeout: Duration::from_secs(60),
            interval: Duration::from_millis(500),
        }
    }
}

#[derive(Debug, Error)]
pub enum PowerError {
    #[error(transparent)]
    Bmc(#[from] ClientError),
    #[error(
        "the BMC accepted the request but still reports {state} after {waited:?} (wanted \
         {wanted}); the server may be slow to change state: raise the power wait timeout or \
         check the hardware"
    )]
    NotSettled {
        wanted: PowerState,
        state: PowerState,
        waited: Duration,
    },
}

/// Polls until the BMC reports `wanted` or `wait.timeout` passes.
pub async fn wait_for(
    client: &Client,
    wanted: PowerState,
    wait: PowerWait,
) -> Result<(), PowerError> {
    let start = Instant::now();
    loop {
        let state = client.power_state().await?;
        if state == wanted {
            return Ok(());
        }
        if start.elapsed() >= wait.timeout {
            return Err(PowerError::NotSettled {
                wanted,
                state,
                waited: start.elapsed(),
            });
        }
        let left = wait.timeout.saturating_sub(start.elapsed());
        tokio::time::sleep(wait.interval.min(left)).await;
    }
}

/// Performs `action` and returns once the BMC reports the resulting state.
pub async fn set_power(
    client: &Client,
    action: PowerAction,
    wait: PowerWait,
) -> Result<PowerState, PowerError> {
    match action {
        PowerAction::On => {
            if client.power_state().await? != PowerState::On {
                client.chassis_control(ChassisControl::PowerOn).await?;
                wait_for(client, PowerState::On, wait).await?;
            }
            Ok(PowerState::On)
        }
        PowerAction::Off | PowerAction::SoftOff => {
            if client.power_state().await? != PowerState::Off {
                let ctl = if action == PowerAction::Off {
                    ChassisControl::PowerOff
                } else {
                    ChassisControl::SoftOff
                };
                client.chassis_control(ctl).await?;
                wait_for(client, PowerState::Off, wait).await?;
            }
            Ok(PowerState::Off)
        }
        PowerAction::Reboot => {
            if client.power_state().await? != PowerState::Off {
                client.chassis_control(ChassisControl::PowerOff).await?;
                wait_for(client, PowerState::Off, wait).await?;
            }
            client.chassis_control(ChassisControl::PowerOn).await?;
            wait_for(client, PowerState::On, wait).await?;
            Ok(PowerState::On)
        }
    }
}

/// Reads the power state of many BMCs, at most `concurrency` at a time, each with a fresh
/// session that is closed afterwards. Results come back in input order.
pub async fn poll_power(
    configs: Vec<ClientConfig>,
    concurrency: usize,
) -> Vec<Result<PowerState, ClientError>> {
    let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut set = tokio::task::JoinSet::new();
    let n = configs.len();
    for (i, cfg) in configs.into_iter().enumerate() {
        let limit = limit.clone();
        set.spawn(async move {
            let _permit = limit.acquire_owned().await.expect("semaphore never closed");
            let client = Client::new(cfg);
            let r = client.power_state().await;
            // A failed close only leaves the session to the BMC's own timeout.
            let _ = client.close().await;
            (i, r)
        });
    }
    let mut out: Vec<Option<Result<PowerState, ClientError>>> = (0..n).map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        if let Ok((i, r)) = joined {
            out[i] = Some(r);
        }
    }
    out.into_iter()
        .map(|r| r.expect("every task reports unless it panicked, which it cannot"))
        .collect()
}
