// The Actors module: Registry, RoomActor, SessionActor, NotifierActor.
import Matrix
import Persistence
