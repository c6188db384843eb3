//! Demand forecasting: series with gaps and outages masked, MSTL + AutoETS (augurs) against
//! seasonal-naive baselines, rolling-origin backtests, and skill gating.

pub mod backtest;
pub mod demand;
pub mod model;
pub mod series;
