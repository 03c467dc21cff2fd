/// The limits of one actor pool, filled by the App from the `actors:` section of the
/// configuration (`max_resident`, `idle_timeout_seconds`).
public struct RegistryLimits: Sendable, Equatable {
    /// At most this many actors are resident; activating one more deactivates the least
    /// recently used.
    public var maxResident: Int
    /// A resident actor not used for this long is deactivated by the next idle sweep.
    public var idleTimeout: Duration

    public init(maxResident: Int, idleTimeout: Duration) {
        precondition(maxResident > 0, "maxResident must be positive")
        self.maxResident = maxResident
        self.idleTimeout = idleTimeout
    }

    /// Convenience for the configuration's integer seconds.
    public init(maxResident: Int, idleTimeoutSeconds: Int) {
        self.init(maxResident: maxResident, idleTimeout: .seconds(idleTimeoutSeconds))
    }
}

/// The counters of one registry, exported as metrics by the App.
public struct RegistryCounters: Sendable, Equatable {
    /// Actors resident now.
    public var resident = 0
    /// Activations in progress now.
    public var activating = 0
    /// Activations started (one per single-flight group).
    public var activations = 0
    /// Callers that joined an activation already in progress.
    public var joins = 0
    /// Deactivations of any cause (eviction, idle, shutdown).
    public var deactivations = 0
    /// Of the deactivations, those forced by `maxResident`.
    public var evictions = 0
    /// Of the deactivations, those after `idleTimeout`.
    public var idleDeactivations = 0
    /// Failed activations plus actors dropped after an unrecoverable error.
    public var failures = 0

    public init() {}
}

/// The time source of a registry, injected so tests drive it by hand.
public protocol RegistryClock: Sendable {
    /// Time elapsed since an arbitrary fixed origin; never decreases.
    func now() -> Duration
}

/// The process's monotonic clock.
public struct MonotonicRegistryClock: RegistryClock {
    private let origin = ContinuousClock.now
    public init() {}
    public func now() -> Duration { ContinuousClock.now - origin }
}
