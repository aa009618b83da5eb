"""Generation: seeds -> instructions -> candidate responses -> judgments -> SFT and preference pairs."""
