"""What headwater ships for tests and demos: a real local Kafka broker, started on demand."""
