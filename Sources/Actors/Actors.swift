// The Actors module: Registry, RoomActor, SessionActor, NotifierActor.
// Ownership and concurrency live here; protocol rules live in Matrix, SQL in Persistence.
