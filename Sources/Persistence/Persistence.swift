// The Persistence module: SQL storage on SQLite and PostgreSQL. See ARCHITECTURE.md.
import Matrix
