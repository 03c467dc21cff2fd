// The Actors module: Registry, RoomActor, SessionActor, Notifier (long-poll waiters).
// Ownership and concurrency live here; protocol rules live in Matrix, SQL in Persistence.
