"""The app's screens, one tab each: Datasets, Models, Run, Browse, Distributions, SQL, Export."""
