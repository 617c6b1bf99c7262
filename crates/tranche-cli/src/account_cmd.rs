//! `tranche account`, `tranche positions`, `tranche orders`: what the broker holds now, as a
//! table for people or JSON for machines (the domain's `Account`, `Position` and `Order`).
//!
//! Invariant: read-only; nothing here sends, replaces or cancels an order.

use std::io::Write;

use rust_decimal::Decimal;
use tranche::domain::{Account, AccountStatus, Order, Position, Symbol};

use crate::broker_cmd::{self, BrokerOptions, Connection};
use crate::error::{CliError, CliResult};

/// Options of `tranche account` and `tranche positions`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReadOptions {
    #[command(flatten)]
    /// The broker.
    pub broker: BrokerOptions,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Options of `tranche orders`.
#[derive(Debug, Clone, clap::Args)]
pub struct OrdersOptions {
    #[command(flatten)]
    /// The broker and the output format.
    pub read: ReadOptions,
    /// Only orders for these symbols (repeat the flag or separate with commas).
    #[arg(long, value_name = "SYMBOL", value_delimiter = ',')]
    pub symbol: Vec<String>,
}

fn run(options: &ReadOptions, body: impl FnOnce(&Connection) -> Result<(), CliError>) -> CliResult {
    let connection = broker_cmd::connect(&options.broker)?;
    body(&connection)?;
    Ok(std::process::ExitCode::SUCCESS)
}

fn print_json(value: &impl serde::Serialize) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| CliError::failure(format!("cannot write JSON: {e}")))?;
    outln!("{text}");
    Ok(())
}

/// `tranche account [--json]`.
pub fn account(options: &ReadOptions) -> CliResult {
    run(options, |c| {
        let account = c.call("account", c.broker.account())?;
        tracing::info!(broker = c.label, equity = %account.equity, "account read");
        if options.json {
            return print_json(&account);
        }
        account_table(c.label, &account, &mut std::io::stdout().lock());
        Ok(())
    })
}

/// `tranche positions [--json]`.
pub fn positions(options: &ReadOptions) -> CliResult {
    run(options, |c| {
        let mut positions = c.call("positions", c.broker.positions())?;
        positions.sort_by(|a, b| a.symbol.cmp(&b.symbol));
        tracing::info!(broker = c.label, positions = positions.len(), "positions read");
        if options.json {
            return print_json(&positions);
        }
        let account = c.call("account", c.broker.account())?;
        positions_table(&positions, account.equity.get(), &mut std::io::stdout().lock());
        Ok(())
    })
}

/// `tranche orders [--symbol S] [--json]`: the open orders.
pub fn orders(options: &OrdersOptions) -> CliResult {
    let wanted = options
        .symbol
        .iter()
        .map(|text| Symbol::parse(text).map_err(|e| CliError::usage(format!("--symbol: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    run(&options.read, |c| {
        let mut orders = c.call("open orders", c.broker.open_orders())?;
        orders.retain(|o| wanted.is_empty() || wanted.contains(&o.symbol));
        orders.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.symbol.cmp(&b.symbol)));
        tracing::info!(broker = c.label, orders = orders.len(), "open orders read");
        if options.read.json {
            return print_json(&orders);
        }
        orders_table(&orders, &mut std::io::stdout().lock());
        Ok(())
    })
}

fn yes_no(value: bool, yes: &'static str, no: &'static str) -> &'static str {
    if value {
        yes
    } else {
        no
    }
}

fn money(value: impl Into<Decimal>) -> String {
    format!("${:.2}", value.into())
}

/// The account as a two-column table.
pub fn account_table(label: &str, account: &Account, out: &mut impl Write) {
    let status = match &account.status {
        AccountStatus::Active => "active".to_owned(),
        AccountStatus::Other(word) => word.to_lowercase(),
    };
    let rows = [
        ("broker", label.to_owned()),
        ("status", status),
        ("equity", money(account.equity)),
        ("cash", money(account.cash)),
        ("buying power", money(account.buying_power)),
        ("non-marginable buying power", money(account.non_marginable_buying_power)),
        ("multiplier", account.multiplier.to_string()),
        ("trading", yes_no(account.can_trade(), "allowed", "blocked").to_owned()),
        ("shorting", yes_no(account.shorting_enabled, "enabled", "disabled").to_owned()),
    ];
    for (name, value) in rows {
        let _ = writeln!(out, "{name:<28} {value}");
    }
}

/// Positions as a table with each one's share of the equity and a total line.
pub fn positions_table(positions: &[Position], equity: Decimal, out: &mut impl Write) {
    if positions.is_empty() {
        let _ = writeln!(out, "no positions (equity {})", money(equity));
        return;
    }
    let _ = writeln!(
        out,
        "{:<10} {:>16} {:>16} {:>11} {:>11} {:>14} {:>8}",
        "SYMBOL", "QTY", "AVAILABLE", "AVG ENTRY", "PRICE", "MARKET VALUE", "WEIGHT"
    );
    let mut total = Decimal::ZERO;
    for p in positions {
        total += p.market_value.get();
        let weight = if equity > Decimal::ZERO {
            format!("{:.2}%", p.market_value.get() * Decimal::ONE_HUNDRED / equity)
        } else {
            "-".to_owned()
        };
        let _ = writeln!(
            out,
            "{:<10} {:>16} {:>16} {:>11} {:>11} {:>14} {:>8}",
            p.symbol.as_str(),
            p.qty.get().normalize().to_string(),
            p.qty_available.get().normalize().to_string(),
            format!("{:.2}", p.avg_entry_price.get()),
            p.current_price.map_or_else(|| "-".to_owned(), |c| format!("{:.2}", c.get())),
            format!("{:.2}", p.market_value.get()),
            weight
        );
    }
    let _ = writeln!(
        out,
        "\n{} position{} worth {}; equity {}",
        positions.len(),
        if positions.len() == 1 { "" } else { "s" },
        money(total),
        money(equity)
    );
}

/// Open orders as a table.
pub fn orders_table(orders: &[Order], out: &mut impl Write) {
    if orders.is_empty() {
        let _ = writeln!(out, "no open orders");
        return;
    }
    let _ = writeln!(
        out,
        "{:<24} {:<8} {:<4} {:<13} {:<4} {:>14} {:>11} {:<16} {:>14}  CLIENT ORDER ID",
        "CREATED", "SYMBOL", "SIDE", "TYPE", "TIF", "QTY", "LIMIT", "STATUS", "FILLED"
    );
    for o in orders {
        let amount = match (o.qty, o.notional) {
            (Some(q), _) => q.get().normalize().to_string(),
            (None, Some(n)) => money(n),
            (None, None) => "-".to_owned(),
        };
        let _ = writeln!(
            out,
            "{:<24} {:<8} {:<4} {:<13} {:<4} {:>14} {:>11} {:<16} {:>14}  {}",
            o.created_at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            o.symbol.as_str(),
            o.side.as_str(),
            o.order_type.as_str(),
            o.time_in_force.as_str(),
            amount,
            o.limit_price.map_or_else(|| "-".to_owned(), |p| p.get().normalize().to_string()),
            o.status.as_str(),
            o.filled_qty.get().normalize().to_string(),
            o.client_order_id.as_str()
        );
    }
    let _ = writeln!(out, "\n{} open order{}", orders.len(), if orders.len() == 1 { "" } else { "s" });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> Account {
        Account {
            status: AccountStatus::Active,
            cash: "2500.5".parse().unwrap(),
            buying_power: "2500.5".parse().unwrap(),
            non_marginable_buying_power: "2500.5".parse().unwrap(),
            regt_buying_power: "2500.5".parse().unwrap(),
            daytrading_buying_power: "0".parse().unwrap(),
            equity: "10000".parse().unwrap(),
            multiplier: 1,
            trading_blocked: false,
            account_blocked: false,
            shorting_enabled: false,
        }
    }

    fn text(write: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        write(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_account_table_shows_money_with_cents_and_trading_state() {
        let table = text(|out| account_table("sim", &account(), out));
        assert!(table.contains("equity                       $10000.00"), "{table}");
        assert!(table.contains("cash                         $2500.50"), "{table}");
        assert!(table.contains("trading                      allowed"), "{table}");
    }

    #[test]
    fn positions_show_their_weight_of_the_equity() {
        let position = Position {
            symbol: Symbol::parse("aapl").unwrap(),
            qty: "10".parse().unwrap(),
            qty_available: "10".parse().unwrap(),
            avg_entry_price: "180".parse().unwrap(),
            market_value: "2500".parse().unwrap(),
            current_price: Some("250".parse().unwrap()),
        };
        let table = text(|out| positions_table(&[position], Decimal::from(10_000), out));
        assert!(table.starts_with("SYMBOL"), "{table}");
        assert!(table.contains("25.00%"), "{table}");
        assert!(table.contains("1 position worth $2500.00; equity $10000.00"), "{table}");
        let empty = text(|out| positions_table(&[], Decimal::from(10_000), out));
        assert_eq!(empty, "no positions (equity $10000.00)\n");
    }

    #[test]
    fn no_open_orders_is_said_plainly() {
        assert_eq!(text(|out| orders_table(&[], out)), "no open orders\n");
    }
}
