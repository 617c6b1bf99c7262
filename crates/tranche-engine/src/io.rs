//! What goes into the decision core ([`Input`]) and what comes out of it ([`Command`]).
//!
//! Invariant: the core sees the world only through inputs and acts only through commands; every
//! broker request carries the id of the item it belongs to, and its answer comes back as the
//! matching input.

use tranche_broker::BrokerError;
use tranche_domain::{
    Account, Asset, BrokerOrderId, ClientOrderId, ExecutionResult, Fill, MarketClock, Order, OrderRequest, Position,
    Quote, ReplaceRequest, Symbol, Timestamp, TradeUpdate,
};

use crate::events::ProgressEvent;

/// A record for the ledger.
#[derive(Debug, Clone)]
pub enum LedgerRecord {
    /// An order's latest state.
    Order(tranche_ledger::OrderRecord),
    /// A fill.
    Fill(tranche_ledger::FillRecord),
    /// An item the run finished on purpose (a resumed run does not trade it again).
    Item(tranche_ledger::ItemRecord),
}

/// What a timer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimerId {
    /// Re-price (or escalate) the working order of an item.
    Repeg(usize),
    /// Retry a request of an item after a refusal that asked to wait (429) or a lookup.
    Retry(usize),
    /// Give up waiting for stale orders to be canceled.
    StaleDeadline,
    /// Send the cancels of stale orders again (a cancel failed).
    StaleRetry,
    /// Look at the account again while waiting for buying power.
    Settle,
    /// The current trading phase ran out of time.
    PhaseDeadline,
    /// The predecessor replica's monitor loop of the phase is over (its phases last that long).
    PhaseLoop,
    /// The run ran out of time.
    RunDeadline,
    /// The wait after the run deadline for the cancels to be confirmed is over.
    FinalGrace,
    /// Read the fill activities again (a cross-check found fills not yet booked).
    FillsRead,
}

/// The broker state read before trading.
#[derive(Debug, Clone)]
pub struct PreflightData {
    /// The account.
    pub account: Result<Account, BrokerError>,
    /// The market clock.
    pub clock: Result<MarketClock, BrokerError>,
    /// Every position.
    pub positions: Result<Vec<Position>, BrokerError>,
    /// Every open order of the account.
    pub open_orders: Result<Vec<Order>, BrokerError>,
    /// Asset metadata of every traded symbol.
    pub assets: Vec<(Symbol, Result<Asset, BrokerError>)>,
}

/// An input to the core.
#[derive(Debug, Clone)]
pub enum Input {
    /// Begin the run.
    Start,
    /// Answer to [`Command::Preflight`].
    Preflight(Box<PreflightData>),
    /// Answer to [`Command::FetchPositions`].
    Positions(Result<Vec<Position>, BrokerError>),
    /// Answer to [`Command::FetchAccount`].
    Account(Result<Account, BrokerError>),
    /// Answer to [`Command::FetchPosition`] (`None`: nothing held).
    ItemPosition {
        /// The item that asked.
        item: usize,
        /// The position or why it could not be read.
        result: Result<Option<Position>, BrokerError>,
    },
    /// Answer to [`Command::FetchQuote`].
    RestQuote {
        /// The item that asked.
        item: usize,
        /// The quote or why there is none.
        result: Result<Quote, BrokerError>,
    },
    /// Answer to several [`Command::FetchQuote`]s of one step, asked in one request.
    RestQuotes {
        /// The items that asked.
        items: Vec<usize>,
        /// The quotes found (a symbol without one is left out) or why there are none.
        result: Result<Vec<Quote>, BrokerError>,
    },
    /// Answer to [`Command::Submit`].
    Submitted {
        /// The item.
        item: usize,
        /// The client order id submitted.
        client_order_id: ClientOrderId,
        /// The order or the error.
        result: Result<Order, BrokerError>,
    },
    /// A [`Command::Replace`] is ready to leave: its intent is recorded, the claim on the plan
    /// proven, and the order it replaces read back (it may have filled meanwhile, or earlier
    /// with its update lost). The core takes a last look and answers [`Command::SendReplace`],
    /// or withdraws it.
    ReplaceCleared {
        /// The item.
        item: usize,
        /// The order to replace.
        old: BrokerOrderId,
        /// The replacement.
        request: ReplaceRequest,
        /// The order to replace, as the broker reports it now.
        current: Result<Order, BrokerError>,
    },
    /// A [`Command::SendReplace`] held back at the last moment before it left (nothing sent):
    /// a fill of the order it replaces came since the last look, the trade-update stream broke
    /// meanwhile, the look grew old waiting for the request budget, or the claim's proof lapsed.
    ReplaceHeldBack {
        /// The item.
        item: usize,
        /// The order it would have replaced.
        old: BrokerOrderId,
        /// The replacement's client order id (never used at the broker).
        client_order_id: ClientOrderId,
    },
    /// Answer to [`Command::SendReplace`].
    Replaced {
        /// The item.
        item: usize,
        /// The order replaced.
        old: BrokerOrderId,
        /// The replacement's client order id.
        client_order_id: ClientOrderId,
        /// The new order or the error.
        result: Result<Order, BrokerError>,
    },
    /// Answer to [`Command::Cancel`].
    Canceled {
        /// The item (`None` for stale orders of earlier runs).
        item: Option<usize>,
        /// The order.
        order: BrokerOrderId,
        /// Accepted or the error.
        result: Result<(), BrokerError>,
    },
    /// Answer to [`Command::LookupClientId`] or [`Command::LookupOrder`].
    LookedUp {
        /// The item.
        item: usize,
        /// The client order id looked up.
        client_order_id: ClientOrderId,
        /// The order or the error (`NotFound` after a targeted lookup means it was never placed).
        result: Result<Order, BrokerError>,
    },
    /// Answer to [`Command::FetchFills`].
    Fills(Result<Vec<Fill>, BrokerError>),
    /// A trade update from the stream.
    Update(Box<TradeUpdate>),
    /// The trade-update stream is up.
    StreamUp,
    /// The trade-update stream is down.
    StreamDown,
    /// Updates since `since` may have been lost.
    StreamGap {
        /// Start of the gap.
        since: Timestamp,
    },
    /// A quote changed in the feed.
    Quote(Quote),
    /// Quotes the feed already held when the subscription was made.
    Quotes(Vec<Quote>),
    /// The quote feed refused to stream `symbols` (its symbol limit; Alpaca's error 405).
    SubscribeRefused {
        /// The symbols of the refused subscription.
        symbols: Vec<Symbol>,
        /// The feed's words.
        message: String,
    },
    /// Writing to the ledger failed for good: the run must stop.
    LedgerFailed(String),
    /// The run was asked to stop (a signal: Ctrl-C, a container or service stop), with why: it
    /// stops trading as at its deadline (open orders cancelled, fills read, the result) and is
    /// left to resume.
    Interrupted(String),
    /// The intent of an order could not be recorded, so the order was not sent.
    IntentFailed {
        /// The item.
        item: usize,
        /// The order that was not sent.
        client_order_id: ClientOrderId,
        /// Why.
        reason: String,
    },
    /// A timer fired.
    Timer(TimerId),
}

/// A command from the core.
#[derive(Debug, Clone)]
pub enum Command {
    /// Read account, clock, positions, open orders and the assets of `symbols`.
    Preflight {
        /// Traded symbols.
        symbols: Vec<Symbol>,
    },
    /// Read positions.
    FetchPositions,
    /// Read one item's position before a sell goes out again (the shares may have been sold
    /// outside the run); answered by [`Input::ItemPosition`].
    FetchPosition {
        /// The item.
        item: usize,
        /// The symbol.
        symbol: Symbol,
    },
    /// Read the account.
    FetchAccount,
    /// Read the REST latest quote for an item's symbol.
    FetchQuote {
        /// The item.
        item: usize,
        /// The symbol.
        symbol: Symbol,
    },
    /// Subscribe quotes.
    Subscribe(Vec<Symbol>),
    /// Release quote subscriptions.
    Release(Vec<Symbol>),
    /// Record the intent, then place the order.
    Submit {
        /// The item.
        item: usize,
        /// The request.
        request: OrderRequest,
        /// The item's arrival mid (recorded with the intent).
        arrival_mid: Option<tranche_domain::Price>,
    },
    /// Record the intent, prove the claim and read back the order to replace, for a replace of
    /// a working order; answered by [`Input::ReplaceCleared`] (or [`Input::IntentFailed`]),
    /// nothing sent yet.
    Replace {
        /// The item.
        item: usize,
        /// The order to replace.
        order: BrokerOrderId,
        /// Symbol and side of the order (for the intent).
        symbol: Symbol,
        /// Side.
        side: tranche_domain::Side,
        /// The replacement.
        request: ReplaceRequest,
        /// The item's arrival mid (recorded with the intent).
        arrival_mid: Option<tranche_domain::Price>,
    },
    /// Send a replace the core cleared on its last look ([`Input::ReplaceCleared`]); answered
    /// by [`Input::Replaced`].
    SendReplace {
        /// The item.
        item: usize,
        /// The order to replace.
        order: BrokerOrderId,
        /// The replacement.
        request: ReplaceRequest,
    },
    /// Write to the ledger.
    Record(Box<LedgerRecord>),
    /// Cancel an order.
    Cancel {
        /// The item (`None` for stale orders of earlier runs).
        item: Option<usize>,
        /// The order.
        order: BrokerOrderId,
    },
    /// Look an order up by client order id.
    LookupClientId {
        /// The item.
        item: usize,
        /// The id.
        client_order_id: ClientOrderId,
    },
    /// Look an order up by broker id.
    LookupOrder {
        /// The item.
        item: usize,
        /// The client order id (echoed back).
        client_order_id: ClientOrderId,
        /// The broker id.
        order: BrokerOrderId,
    },
    /// Read fill activities since a time.
    FetchFills {
        /// Start.
        since: Timestamp,
    },
    /// Fire `id` at `at` (replaces an earlier timer with the same id).
    SetTimer {
        /// What for.
        id: TimerId,
        /// When.
        at: Timestamp,
    },
    /// Drop a timer.
    CancelTimer(TimerId),
    /// Tell the user.
    Emit(ProgressEvent),
    /// The run is over.
    Finish(Box<ExecutionResult>),
}

/// From this many symbols on, a plan's assets are read from the broker's list in one request
/// (then any name missing from it alone) rather than one request per symbol.
pub(crate) const ASSET_LIST_FROM: usize = 20;
