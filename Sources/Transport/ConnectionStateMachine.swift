/// The lifecycle of one HTTP/1.1 connection as a value: what it is reading, which request is
/// with the responder, whether its answer streams, why reading is stopped, the deadline that
/// runs, what is being written, and whether it is closing.
///
/// A pure state machine (no socket, no clock of its own: callers pass loop time in ms), in the
/// style of SwiftNIO's handler state machines: `Connection` reports each event (bytes parsed,
/// a response delivered, a write completed, a sweep) and performs the small action returned
/// (start or stop reading, dispatch, pause or resume the parser, close). Every field that decides
/// what a connection may do next lives here; `Connection` keeps only data (buffers, the pending
/// queue, the body stream, the runner) and handles.
///
/// A TLS layer would not add states here: it sits below, between the socket and the parser
/// (see `Connection.received(_:)` and `Connection.flush()`), and its own handshake and
/// close_notify would be a separate machine that feeds this one plaintext.
struct ConnectionStateMachine {
    /// The transport limits the machine applies, as plain numbers.
    struct Limits {
        var headerReadTimeoutMs: UInt64
        var bodyReadTimeoutMs: UInt64
        var idleTimeoutMs: UInt64
        var maxPipelined: Int
        var maxHeaderBytes: Int
        /// 0: no credit for body bytes (see `TransportConfiguration.minBodyBytesPerSecond`).
        var minBodyBytesPerSecond: UInt64
        var maxUnsentOutputBytes: Int
    }

    /// Whether the connection lives.
    enum Phase: Equatable {
        case open
        /// Nothing more is read or dispatched: it closes once its output is written.
        case closingAfterWrite
        /// Closed (its handle is being released).
        case closed
    }

    /// What the parser is in the middle of.
    enum Input: Equatable {
        /// Between requests: idle, or waiting for the next one to begin.
        case betweenMessages
        /// A request's head is arriving.
        case head
        /// The head is parsed and the request has no body: its end follows at once.
        case headParsed(streamed: Bool)
        /// The body is arriving, buffered or streamed to its handler. `answered`: its request
        /// was answered already, so the rest of the body is read and dropped.
        case body(streamed: Bool, answered: Bool)
    }

    /// The connection's one request with the responder, or the answer still streaming out.
    enum Response: Equatable {
        case none
        case dispatched(sequence: UInt64)
        /// A streamed or file response is being written (`chunked`: with chunked encoding).
        case streaming(sequence: UInt64, chunked: Bool)
    }

    /// The reasons reading stays stopped; it resumes only when none remains.
    struct ReadHolds: OptionSet, Equatable {
        let rawValue: UInt8
        /// The parser is paused (too many pipelined requests, or a request closing the input).
        static let parser = ReadHolds(rawValue: 1 << 0)
        /// The consumer of a streamed body has not taken what it was given (server's pause).
        static let bodyConsumer = ReadHolds(rawValue: 1 << 1)
        /// Unsent output passed `maxUnsentOutputBytes` (server's pause; dispatch stops too).
        static let output = ReadHolds(rawValue: 1 << 2)
        /// An error answer was queued: nothing more is read.
        static let rejected = ReadHolds(rawValue: 1 << 3)
        /// The input ended by protocol (an upgrade request is answered, then the connection closes).
        static let ended = ReadHolds(rawValue: 1 << 4)
        /// The server's own reasons, during which no input deadline runs.
        static let server: ReadHolds = [.bodyConsumer, .output]
    }

    /// What to do with the socket's reading.
    enum ReadAction: Equatable { case none, start, stop }

    /// What the next request's dispatch calls for.
    enum DispatchAction: Equatable {
        case none
        /// Hand the first pending request to the responder.
        case dispatch(sequence: UInt64)
        /// Shutting down and idle: close once the output is written.
        case closeWhenWritten
    }

    /// After a change of unsent output.
    enum OutputPressure: Equatable {
        case none
        /// Output passed the bound: reading stopped (count it).
        case paused(ReadAction)
        /// Output fell below half the bound: reading may resume and dispatch continue.
        case resumed(ReadAction)
    }

    /// After a parsed request ends, what the parser does next.
    enum ParserAction: Equatable {
        case proceed
        /// Pause the parser (too many requests queued).
        case pause
        /// The request ends the connection's input: stop reading and pause the parser.
        case pauseAndStop(ReadAction)
    }

    /// When the sweep finds a deadline passed.
    enum TimeoutAction: Equatable { case none, close, reject }

    /// A chunk of request body, where it goes.
    enum BodyAction: Equatable { case tooLarge, buffer, stream }

    let limits: Limits
    private(set) var phase = Phase.open
    private(set) var input = Input.betweenMessages
    private(set) var response = Response.none
    private(set) var holds: ReadHolds = []
    /// The socket is being read (`uv_read_start` is in effect).
    private(set) var reading = false
    /// Loop time (ms) at which the current phase times out; 0 when none applies. A body's
    /// deadline is absolute from the end of its head (see `bodyReceived` for what extends it).
    private(set) var deadline: UInt64 = 0
    /// Loop time at which the server stopped reading for reasons of its own (a slow consumer
    /// of a streamed body, unsent output); 0 while it is not. The deadline does not run
    /// meanwhile, and moves by the time paused when reading resumes: the peer is charged for
    /// the time the server waits for its bytes, never for the server's own slowness.
    private(set) var serverPausedAt: UInt64 = 0
    private(set) var bodyLimit = 0
    private(set) var bodyCount = 0
    /// `uv_write`s in flight and their bytes (output not yet taken by the socket).
    private(set) var writesInFlight = 0
    private(set) var writeBacklog = 0
    /// Write-stall detection: loop time of the last sign that the peer reads (a write completed
    /// or libuv's write queue shrank), and the queue size seen then.
    private(set) var writeProgressAt: UInt64 = 0
    private(set) var lastWriteQueueSize = 0

    init(limits: Limits) {
        self.limits = limits
    }

    var isClosed: Bool { phase == .closed }
    /// True when the connection closes once its output is written. Not while a response body
    /// still streams (a file or a stream after its head): the last response of a
    /// `Connection: close` request closes after its body, when `streamFinished` ends it.
    var closesAfterWrite: Bool { phase == .closingAfterWrite && streamingSequence == nil }
    var isRejected: Bool { holds.contains(.rejected) }
    var parserPaused: Bool { holds.contains(.parser) }
    var outputPaused: Bool { holds.contains(.output) }
    var readPausedByBody: Bool { holds.contains(.bodyConsumer) }
    /// The sequence of the response being streamed, if one is.
    var streamingSequence: UInt64? {
        if case .streaming(let sequence, _) = response { return sequence }
        return nil
    }
    var streamingChunked: Bool {
        if case .streaming(_, let chunked) = response { return chunked }
        return false
    }
    /// A request head is arriving: the parser's head arena is in use.
    var isReadingHead: Bool { input == .head }

    /// The current request's body goes to a stream rather than a buffer.
    var currentIsStreamed: Bool {
        switch input {
        case .headParsed(let streamed), .body(let streamed, _): return streamed
        case .betweenMessages, .head: return false
        }
    }

    // MARK: Reading

    /// The connection was accepted: the first head must arrive within the header timeout.
    mutating func start(now: UInt64) -> ReadAction {
        deadline = now + limits.headerReadTimeoutMs
        return startReading()
    }

    mutating func startReading() -> ReadAction {
        guard !reading, phase != .closed else { return .none }
        reading = true
        return .start
    }

    mutating func stopReading() -> ReadAction {
        guard reading else { return .none }
        reading = false
        return .stop
    }

    /// Reads again unless something still holds reading stopped.
    mutating func resumeReadingIfAllowed() -> ReadAction {
        guard holds.isEmpty, phase == .open else { return .none }
        return startReading()
    }

    /// The server stops reading for a reason of its own: the peer's deadline stops running.
    private mutating func pauseForServer(_ hold: ReadHolds, now: UInt64) -> ReadAction {
        holds.insert(hold)
        let action = stopReading()
        if serverPausedAt == 0 { serverPausedAt = max(1, now) }
        return action
    }

    /// A server's reason to stop reading was cleared: once none remains, the deadline moves by
    /// the time paused and reading resumes.
    private mutating func resumeForServer(_ hold: ReadHolds, now: UInt64) -> ReadAction {
        holds.remove(hold)
        guard holds.isDisjoint(with: .server) else { return .none }
        if serverPausedAt != 0 {
            if deadline != 0 && input != .betweenMessages { deadline += now &- serverPausedAt }
            serverPausedAt = 0
        }
        return resumeReadingIfAllowed()
    }

    /// The parser paused itself (too many requests queued, or the last request of the input).
    mutating func parserDidPause() -> ReadAction {
        holds.insert(.parser)
        return stopReading()
    }

    /// The paused parser resumes; the caller feeds it the input kept meanwhile, then calls
    /// `resumeReadingIfAllowed`.
    mutating func parserWillResume() {
        holds.remove(.parser)
    }

    /// Whether an answer leaves room to resume the paused parser.
    func shouldResumeParser(pending: Int) -> Bool {
        holds.contains(.parser) && pending <= limits.maxPipelined / 2
    }

    /// An upgrade request: it is answered, nothing more is read.
    mutating func inputEnded() -> ReadAction {
        holds.insert(.ended)
        return stopReading()
    }

    /// An error answer is queued after the responses owed: nothing more is read, no deadline runs.
    mutating func reject() -> ReadAction {
        holds.insert(.rejected)
        let action = stopReading()
        deadline = 0
        return action
    }

    // MARK: Parsing

    mutating func messageBegan(now: UInt64) {
        input = .head
        deadline = now + limits.headerReadTimeoutMs
    }

    /// A head was parsed; false when its declared length is past the body limit.
    mutating func headParsed(bodyLimit: Int, declaredLength: Int?, streamed: Bool) -> Bool {
        self.bodyLimit = bodyLimit
        if let declaredLength, declaredLength > bodyLimit { return false }
        bodyCount = 0
        input = .headParsed(streamed: streamed)
        return true
    }

    /// After the head's request was queued: a body's deadline is absolute from now.
    mutating func bodyBegins(hasBody: Bool, now: UInt64) {
        if hasBody {
            input = .body(streamed: currentIsStreamed, answered: false)
            // Absolute: the whole body must arrive by then (plus what it earns, see `bodyReceived`).
            deadline = now + limits.bodyReadTimeoutMs
        } else {
            deadline = 0
        }
    }

    mutating func bodyReceived(count: Int) -> BodyAction {
        bodyCount += count
        if bodyCount > bodyLimit { return .tooLarge }
        // The body deadline is not reset by a read: each byte only earns 1/min-rate seconds
        // (rounded down per read, so a peer trickling a few bytes at a time earns nothing).
        let rate = limits.minBodyBytesPerSecond
        if rate != 0 && deadline != 0 { deadline &+= UInt64(count) &* 1000 / rate }
        return currentIsStreamed ? .stream : .buffer
    }

    /// The consumer of the streamed body is slow, not the peer: its deadline stops until it drains.
    mutating func bodyConsumerFull(now: UInt64) -> ReadAction {
        pauseForServer(.bodyConsumer, now: now)
    }

    /// The consumer drained what it held, or went away.
    mutating func bodyConsumerDrained(now: UInt64) -> ReadAction {
        guard holds.contains(.bodyConsumer), phase != .closed else { return .none }
        return resumeForServer(.bodyConsumer, now: now)
    }

    /// The request whose streamed body is arriving was answered: the rest of the body is read
    /// and dropped (within the same deadline). True when that was the case.
    mutating func bodyOwnerAnswered() -> Bool {
        guard case .body(streamed: true, _) = input else { return false }
        input = .body(streamed: true, answered: true)
        return true
    }

    /// A request ended (its body, if any, arrived whole); `afterMessage` follows once it is queued.
    mutating func messageComplete() {
        input = .betweenMessages
        deadline = 0
    }

    /// What the parser does after a request; `pending` counts the requests queued on the connection.
    mutating func afterMessage(keepAlive: Bool, pending: Int) -> ParserAction {
        // No request may follow one without keep-alive on the connection.
        if !keepAlive { return .pauseAndStop(stopReading()) }
        return pending > limits.maxPipelined ? .pause : .proceed
    }

    // MARK: Dispatch and responses

    /// Whether the first pending request (if any; `complete` when its body is whole) goes to
    /// the responder now. When nothing is pending, the connection becomes idle: the idle
    /// deadline runs, or during shutdown it closes.
    mutating func dispatch(first: UInt64?, complete: Bool, now: UInt64, draining: Bool) -> DispatchAction {
        if response == .none, !holds.contains(.output), let first {
            guard complete else { return .none }
            response = .dispatched(sequence: first)
            return .dispatch(sequence: first)
        }
        guard response == .none, first == nil, input == .betweenMessages, phase != .closed else { return .none }
        if draining {
            phase = .closingAfterWrite
            return .closeWhenWritten
        }
        deadline = now + limits.idleTimeoutMs
        return .none
    }

    /// Whether a response for `sequence` is awaited.
    func awaits(_ sequence: UInt64) -> Bool {
        phase != .closed && response == .dispatched(sequence: sequence)
    }

    /// The dispatched request's answer is being written.
    mutating func responded() {
        response = .none
    }

    /// Its answer's body streams out (a stream or a file) after the head.
    mutating func responseStreams(sequence: UInt64, chunked: Bool) {
        response = .streaming(sequence: sequence, chunked: chunked)
    }

    /// The streamed answer ended; true when the connection must close once written (the
    /// stream failed, or the connection was closing anyway) rather than go on.
    mutating func streamFinished(failed: Bool) -> Bool {
        response = .none
        if failed { closeAfterWrite() }
        return phase != .open
    }

    mutating func closeAfterWrite() {
        if phase == .open { phase = .closingAfterWrite }
    }

    // MARK: Output

    /// Output was queued on the way to the socket.
    mutating func outputQueued(backlog: Int, now: UInt64) -> OutputPressure {
        guard backlog > limits.maxUnsentOutputBytes, !holds.contains(.output) else { return .none }
        return .paused(pauseForServer(.output, now: now))
    }

    /// After output left for the socket: stops or resumes reading and dispatching.
    @inline(__always)
    mutating func outputLeft(backlog: Int, now: UInt64) -> OutputPressure {
        if holds.contains(.output) {
            guard backlog <= limits.maxUnsentOutputBytes / 2 else { return .none }
            return .resumed(resumeForServer(.output, now: now))
        }
        return outputQueued(backlog: backlog, now: now)
    }

    mutating func writeStarted(bytes: Int, now: UInt64) {
        if writesInFlight == 0 {
            writeProgressAt = now
            lastWriteQueueSize = 0
        }
        writesInFlight += 1
        writeBacklog += bytes
    }

    /// A `uv_write` completed (or failed to start: `progressed` false).
    mutating func writeFinished(bytes: Int, progressed: Bool, now: UInt64) {
        writesInFlight -= 1
        writeBacklog -= bytes
        if progressed { writeProgressAt = now }
    }

    /// Sweep, while writes are in flight: true when the peer read nothing of its answers for
    /// the idle timeout (libuv's write queue shrinks as the socket takes any part of it).
    mutating func writeStalled(queued: Int, now: UInt64) -> Bool {
        if queued < lastWriteQueueSize { writeProgressAt = now }
        lastWriteQueueSize = queued
        return now &- writeProgressAt >= limits.idleTimeoutMs
    }

    // MARK: Timeouts and closing

    /// Sweep: what the passing of `now` calls for. No input deadline runs while the server
    /// itself keeps the connection from reading.
    mutating func tick(now: UInt64, hasUnsentOutput: Bool) -> TimeoutAction {
        guard phase != .closed, deadline != 0, deadline <= now, serverPausedAt == 0 else { return .none }
        deadline = 0
        switch input {
        case .betweenMessages:
            if writesInFlight > 0 || hasUnsentOutput {
                // Not idle while answers are still going out: the write-stall check judges
                // the peer meanwhile, and idleness counts again once they are out.
                deadline = now + limits.idleTimeoutMs
                return .none
            }
            return .close  // idle keep-alive connection, or a connection that never sent a byte
        case .body(_, answered: true):
            return .close  // its request was answered: there is nothing left to answer with 408
        case .head, .headParsed, .body:
            return .reject
        }
    }

    /// Shutdown began: an idle connection closes now (true), another stops reading.
    mutating func shutdownBegan(pending: Int) -> (close: Bool, read: ReadAction) {
        if response == .none && pending == 0 && input == .betweenMessages { return (true, .none) }
        return (false, stopReading())
    }

    /// False when it was closed already.
    mutating func close() -> Bool {
        guard phase != .closed else { return false }
        phase = .closed
        reading = false
        deadline = 0
        return true
    }
}
